"""Declarative policy files: the file (:mod:`.file`), the plan against the running
attachments (:mod:`.planning`), carrying it out (:mod:`.reconciling`), and the running
state as a file (:mod:`.exporting`). docs/operations.md has the file's reference.

>>> desired = parse_policy_file('[interfaces.eth0]\\nblock = ["192.0.2.7"]\\n')
>>> [spec.point.label for spec in desired.attachments.values()]
['eth0']
"""

from __future__ import annotations

from pingkiller.declarative.exporting import export, export_file, from_running
from pingkiller.declarative.file import AttachmentSpec, PolicyFile, dump, load, policy_file
from pingkiller.declarative.file import parse as parse_policy_file
from pingkiller.declarative.planning import Plan, Step, StepAction, plan
from pingkiller.declarative.reconciling import apply, reconcile, watch

parse = parse_policy_file

__all__ = [
    "AttachmentSpec",
    "Plan",
    "PolicyFile",
    "Step",
    "StepAction",
    "apply",
    "dump",
    "export",
    "export_file",
    "from_running",
    "load",
    "parse",
    "parse_policy_file",
    "plan",
    "policy_file",
    "reconcile",
    "watch",
]

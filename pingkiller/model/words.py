"""The words of every enum that users type or read, one vocabulary each: CLI options,
policy files, ``--json`` output, metric labels and messages all use these."""

from __future__ import annotations

from pingkiller.model.enums import (
    DefaultAction,
    Direction,
    EventsMode,
    Hook,
    Mode,
    Reason,
    RuleAction,
    TimingSlot,
)
from pingkiller.model.vocabulary import Vocabulary

HOOKS = Vocabulary({hook.label: hook for hook in Hook})
DIRECTIONS = Vocabulary({direction.label: direction for direction in Direction})
# The modes one can ask for; an attachment reports the mode in effect as Mode.value.
MODES = Vocabulary({"auto": Mode.AUTO, "native": Mode.NATIVE, "generic": Mode.GENERIC,
                    "tcx": Mode.TCX, "clsact": Mode.CLSACT})
REASONS = Vocabulary({reason.label: reason for reason in Reason})
DEFAULT_ACTIONS = Vocabulary({"drop": DefaultAction.DROP, "pass": DefaultAction.PASS,
                              "limit": DefaultAction.LIMIT})
RULE_ACTIONS = Vocabulary({"block": RuleAction.BLOCK, "allow": RuleAction.ALLOW,
                           "limit": RuleAction.LIMIT})
EVENT_MODES = Vocabulary({"off": EventsMode.OFF, "drops": EventsMode.DROPS,
                          "pings": EventsMode.PINGS, "all": EventsMode.ALL})
# The verdicts whose processing time is measured.
TIMING_SLOTS = Vocabulary({"drop": TimingSlot.DROP, "pass": TimingSlot.PASS})

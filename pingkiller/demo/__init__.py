"""``pingkiller demo``: kill pings in a sandbox of its own (:mod:`.run`), shown live
(:mod:`.render`); the sandbox (:mod:`.sandbox`) also serves the tests and benchmarks."""

from pingkiller.demo.render import run_live, summary_lines
from pingkiller.demo.run import DemoState, run
from pingkiller.demo.sandbox import Peer, Sandbox
from pingkiller.model.errors import SandboxError

__all__ = ["DemoState", "Peer", "Sandbox", "SandboxError", "run", "run_live",
           "summary_lines"]

"""Kill points for the fault-injection tests (tests/faults/).

`SMT_KILL_AT=<point>` or `<point>:<n>` makes the process kill itself with SIGKILL the n-th time (default: the
first) it passes `<point>`: stopped the way a power cut or the OOM killer stops it, with no chance to clean up,
at a place a test can name (a shard between its records and its manifest, training after its second checkpoint).
Unset, as it always is outside those tests, a point does nothing.
"""

from __future__ import annotations

import os
import signal

VAR = "SMT_KILL_AT"
_passed: dict[str, int] = {}


def point(name: str) -> None:
    wanted = os.environ.get(VAR)
    if not wanted:
        return
    target, _, nth = wanted.partition(":")
    if target != name:
        return
    _passed[name] = _passed.get(name, 0) + 1
    if _passed[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)

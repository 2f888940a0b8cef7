"""Named points where the fault tests kill the process, as a power cut would: ``TAO_KILL_AT=<point>``.

Unset (always, outside tests/test_faults.py), ``point`` does nothing. Set, the process sends itself SIGKILL the
first time it reaches that point: no handler, no ``finally``, no flush runs, which is the worst case a run must
survive. The points sit in the middle of each stage's work, after the work and before its record is written.
"""

from __future__ import annotations

import os
import signal

POINTS = ("explore", "score", "update", "manifest")


def point(name: str) -> None:
    if os.environ.get("TAO_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)

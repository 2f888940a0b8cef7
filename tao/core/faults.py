"""Named points where the fault tests kill the process, as a power cut would: ``TAO_KILL_AT=<point>[:<n>]``.

Unset (always, outside tests/test_faults.py), ``point`` does nothing. Set, the process sends itself SIGKILL the
n-th time (default: the first) it reaches that point: no handler, no ``finally``, no flush runs, which is the
worst case a run must survive. The stage points sit in the middle of each stage's work, after the work and before
its record is written; ``update`` is reached at the end of every optimizer step. The write points sit inside the
saves: ``write`` between a file's synced temporary copy and its rename into place (every file tao writes),
``publish`` between removing a directory's old version and moving the new one in (adapters), ``record`` between
a stage's published artefact and its stage record, ``ingest`` after each prompt inserted into the pool.
"""

from __future__ import annotations

import os
import signal

POINTS = ("explore", "score", "update", "manifest")  # stage points
WRITE_POINTS = ("write", "publish", "record", "ingest")


_reached: dict[str, int] = {}


def point(name: str) -> None:
    target, _, nth = os.environ.get("TAO_KILL_AT", "").partition(":")
    if target != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)

"""The syntax of the specs a user writes: exploration strategies (``SPEC[=SHARE]``) and scorers (``SPEC[=WEIGHT]``).

Parsed here, below everything else, so that the config can validate them without importing the engines or the
scorers that carry them out (rollouts/strategies.py, reward/scorer.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

KINDS = ("sample", "ladder", "think", "guide", "refine", "best_of", "exemplars", "greedy", "repair")
# The scorers whose instructions the ``repair`` strategy can fix (reward/instructions/repair.py); it needs one of them.
REPAIRING_SCORERS = ("rule:instructions", "rule:all_instructions")


@dataclass(frozen=True)
class Strategy:
    kind: str  # one of KINDS
    arg: str  # the part after "kind:", "" when none
    share: float  # relative share of the group (normalised over the list)
    guides: tuple[str, ...] = ()  # guide: the system-prompt variants read from the file

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.arg}" if self.arg else self.kind


def parse_strategy(spec: str) -> Strategy:
    """``SPEC[=SHARE]`` -> Strategy; a ValueError says what is wrong (files are read by :func:`load_strategies`)."""
    body, _, share_text = spec.rpartition("=") if re.search(r"=[0-9.]+$", spec) else (spec, "", "")
    share = float(share_text) if share_text else 1.0
    if not math.isfinite(share) or share <= 0:
        raise ValueError(f"{spec!r}: the share must be > 0")
    kind, _, arg = body.partition(":")
    if kind not in KINDS:
        raise ValueError(f"{spec!r}: unknown strategy {kind!r} (one of {', '.join(KINDS)})")
    if kind == "ladder" and arg and not re.fullmatch(r"[0-9.]+-[0-9.]+", arg):
        raise ValueError(f"{spec!r}: a ladder is LOW-HIGH, e.g. ladder:0.4-1.2")
    least = {"refine": 1, "exemplars": 1, "best_of": 2}.get(kind)
    if least and arg and not (arg.isdecimal() and int(arg) >= least):
        raise ValueError(f"{spec!r}: {kind} takes a whole number (>= {least})")
    if kind == "guide" and not arg:
        raise ValueError(f"{spec!r}: guide needs a file, guide:FILE")
    if kind in ("sample", "think", "greedy", "repair") and arg:
        raise ValueError(f"{spec!r}: {kind} takes no argument")
    if kind == "greedy" and share_text:
        raise ValueError(f"{spec!r}: greedy is always one candidate; it takes no share")
    return Strategy(kind, arg, share)


_WEIGHT = re.compile(r"^(?P<spec>.+)=(?P<weight>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)$")


def split_weight(text: str) -> tuple[str, float]:
    """``"rule:finished=0.25"`` -> ``("rule:finished", 0.25)``; no weight means 1."""
    match = _WEIGHT.match(text.strip())
    if match:
        return match["spec"], float(match["weight"])
    return text.strip(), 1.0

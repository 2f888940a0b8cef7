"""The prompt pool of a run: which prompts are held out, and which ones each round trains on.

The hold-out assignment is made once per prompt, the first time the run sees it, and never changes:
appending prompts to the file adds new assignments (keeping the held-out share at ``fraction`` of all
prompts seen) without moving an old prompt between the training and the held-out side. Which new
prompts are held out is decided by a seeded hash of their ids, so the same file and seed give the same
split on any machine.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def _rank(seed: int, salt: str, prompt_id: str) -> str:
    return hashlib.sha256(f"{seed}:{salt}:{prompt_id}".encode()).hexdigest()


@dataclass(frozen=True)
class Split:
    seen: tuple[str, ...]  # every prompt id the run has assigned, in the order first seen
    holdout: tuple[str, ...]  # the held-out ones, in the order they were assigned

    def extend(self, ids: Sequence[str], fraction: float, seed: int) -> Split:
        """The split after seeing ``ids`` (a file's prompt ids, in order); known ids keep their side."""
        known = set(self.seen)
        new = [i for i in dict.fromkeys(ids) if i not in known]
        if not new:
            return self
        target = round(fraction * (len(self.seen) + len(new)))
        take = min(max(target - len(self.holdout), 0), len(new))
        held = sorted(new, key=lambda i: _rank(seed, "holdout", i))[:take]
        return Split(self.seen + tuple(new), self.holdout + tuple(held))

    def train_ids(self, present: Iterable[str]) -> list[str]:
        """Training ids among ``present`` (the current file's ids), in file order."""
        held = set(self.holdout)
        return [i for i in present if i not in held]

    def eval_ids(self, present: Iterable[str], limit: int) -> list[str]:
        """The evaluation set: the first ``limit`` held-out ids still present in the file."""
        here = set(present)
        return [i for i in self.holdout if i in here][:limit]


def pick_round(train_ids: Sequence[str], used: Counter, count: int, seed: int, round_index: int) -> list[str]:
    """The prompts one round explores: least-used first (new prompts before revisits), seeded order.

    ``count`` 0 takes every training prompt.
    """
    order = sorted(train_ids, key=lambda i: (used[i], _rank(seed, f"round-{round_index}", i)))
    return order if count == 0 else order[:count]

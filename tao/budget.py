"""The time budget of one ``tao run`` (``run.minutes``): how many prompts the next round can take and still end in time.

A round's time grows with its prompts (exploring, scoring and training them) plus a part that does not (the
evaluation on the held-out prompts). Both are read from the stage records of the last finished rounds. Rather than
stop an hour's run at minute 49 because a full round would end at minute 61, the last round takes the prompts that
fit; with no finished round to go by, a round runs at full size.

Per-prompt times swing between rounds (answers grow and shrink; groups without signal cost no update): over the 61
pairs of consecutive rounds in the learning benchmark's runs (docs/RESULTS.md), a round's per-prompt time exceeded
the round before it by more than 10% in 28% of them, and the slowest of the three before it by more than 25% in 8%.
So the estimate is that slowest of the last three, stretched by ``MARGIN``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tao.config import Config
from tao.paths import RunPaths
from tao.plan import Plan, planned_rounds
from tao.storage import read_json

MARGIN = 1.25  # estimated seconds are stretched by this much (see above)
LOOKBACK = 3  # finished rounds the per-prompt estimate is taken from (the slowest of them)
PER_PROMPT_STAGES = ("explore", "score", "update")


@dataclass(frozen=True)
class RoundCost:
    """Seconds a round spends per training prompt, and apart from them (the held-out evaluation)."""

    per_prompt: float
    fixed: float

    def prompts_within(self, seconds: float) -> int:
        return max(0, math.floor((seconds / MARGIN - self.fixed) / self.per_prompt)) if self.per_prompt > 0 else 0


def round_cost(paths: RunPaths) -> RoundCost | None:
    """The slowest per-prompt time of the last ``LOOKBACK`` finished rounds, and the last one's evaluation time;
    None before any round has finished."""
    finished = [r for r in planned_rounds(paths) if r.manifest.is_file()][-LOOKBACK:]
    if not finished:
        return None
    per_prompt = []
    for rp in finished:
        seconds = sum(read_json(rp.stage(name)).get("seconds", 0.0) for name in PER_PROMPT_STAGES)
        per_prompt.append(seconds / len(Plan.read(rp).prompts))
    return RoundCost(max(per_prompt), read_json(finished[-1].stage("evaluate")).get("seconds", 0.0))


def next_round_prompts(config: Config, paths: RunPaths, elapsed_seconds: float) -> int | None:
    """Training prompts for the next round: ``data.prompts_per_round`` (0 = all) when there is no budget or no
    estimate yet, fewer when only fewer fit in what is left of ``run.minutes``, and None when not even one optimizer
    step's worth (``update.prompts_per_step`` prompts) fits: the run stops there."""
    wanted = config.data.prompts_per_round
    cost = round_cost(paths)
    if not config.run.minutes or cost is None:
        return wanted
    fits = cost.prompts_within(config.run.minutes * 60 - elapsed_seconds)
    step = config.update.prompts_per_step
    return None if fits < min(step, wanted or step) else min(fits, wanted or fits)

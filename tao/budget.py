"""The time budget of one ``tao run`` (``run.minutes``): how many prompts the next round can take and still end in time.

A round's time grows with its prompts (exploring, scoring and training them) plus a part that does not (the
evaluation on the held-out prompts). Both are read from the last finished round's stage records, so the estimate
follows the model as its answers grow or shrink. Rather than stop an hour's run at minute 49 because a full round
would end at minute 61, the last round takes the prompts that fit; with no finished round to go by, a round runs at
full size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tao.config import Config
from tao.paths import RunPaths
from tao.plan import Plan, planned_rounds
from tao.storage import read_json

MARGIN = 1.1  # estimated seconds are stretched by this much: round times vary by about this between rounds
PER_PROMPT_STAGES = ("explore", "score", "update")


@dataclass(frozen=True)
class RoundCost:
    """Seconds a round spends per training prompt, and apart from them (the held-out evaluation)."""

    per_prompt: float
    fixed: float

    def prompts_within(self, seconds: float) -> int:
        return max(0, math.floor((seconds / MARGIN - self.fixed) / self.per_prompt)) if self.per_prompt > 0 else 0


def last_round_cost(paths: RunPaths) -> RoundCost | None:
    """The cost of the last finished round, from its stage records; None before any round has finished."""
    finished = [r for r in planned_rounds(paths) if r.manifest.is_file()]
    if not finished:
        return None
    rp = finished[-1]
    seconds = {name: read_json(rp.stage(name)).get("seconds", 0.0) for name in (*PER_PROMPT_STAGES, "evaluate")}
    prompts = len(Plan.read(rp).prompts)
    return RoundCost(sum(seconds[s] for s in PER_PROMPT_STAGES) / prompts, seconds["evaluate"])


def next_round_prompts(config: Config, paths: RunPaths, elapsed_seconds: float) -> int | None:
    """Training prompts for the next round: ``data.prompts_per_round`` (0 = all) when there is no budget or no
    estimate yet, fewer when only fewer fit in what is left of ``run.minutes``, and None when not even one optimizer
    step's worth (``update.prompts_per_step`` prompts) fits: the run stops there."""
    wanted = config.data.prompts_per_round
    cost = last_round_cost(paths)
    if not config.run.minutes or cost is None:
        return wanted
    fits = cost.prompts_within(config.run.minutes * 60 - elapsed_seconds)
    if fits < (min(config.update.prompts_per_step, wanted) if wanted else config.update.prompts_per_step):
        return None
    return min(fits, wanted) if wanted else fits

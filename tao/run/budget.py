"""The time budget of one ``tao run`` (``run.minutes``): how many prompts the next round can take and still end in time.

A round's time has three parts, each read from the stage records of the last finished rounds: exploring and
scoring its prompts, the update's optimizer steps, and the evaluation on the held-out prompts (the same whatever the
round's size). Rather than stop an hour's run at minute 49 because a full round would end at minute 61, the last
round takes the prompts that fit; with no finished round to go by, a round runs at full size.

Not linear in the prompts: a round of a few prompts generates in small batches, which cost more a sequence (as
measured on a CPU; on a GPU a batch's cost depends even less on its size), and its update runs whole optimizer steps
(``update.prompts_per_step`` groups each; a part-filled last step is filled by wrapping around). So exploring p
prompts is estimated as E * (p / n) ** ``EXPLORE_SCALING`` of a round that explored n prompts in E seconds, and the
update as its steps (the largest share of prompts whose group was trained, in groups of ``prompts_per_step``) times
the slowest step. How well these estimates held on the learning benchmark's runs, and why the exponent and the
margin are what they are: docs/experiments/2026-11-30-learning-settings.md ("Using the whole hour").

Per-prompt times also swing between rounds (answers grow and shrink; groups without signal cost no update), so
every part is the slowest of the last three rounds, and the sum is stretched by ``MARGIN``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tao.core.config import Config
from tao.core.storage import read_json
from tao.run.paths import RunPaths
from tao.run.plan import Plan, planned_rounds

MARGIN = 1.25  # estimated seconds are stretched by this much (see above)
LOOKBACK = 3  # finished rounds the estimate is taken from (the slowest of them)
EXPLORE_SCALING = 0.7  # exploring p prompts costs E * (p / n) ** this of a round that explored n in E seconds


@dataclass(frozen=True)
class RoundCost:
    """What the last finished rounds spent: on exploring and scoring their prompts, per optimizer step, and apart
    from their prompts (the held-out evaluation)."""

    explored: tuple[tuple[int, float], ...]  # (prompts, seconds exploring and scoring them) of each round
    step_seconds: float  # the slowest optimizer step (update seconds / steps) of those rounds
    trained_share: float  # the largest share of a round's prompts whose group was trained
    fixed: float  # the last round's evaluation

    def seconds(self, prompts: int, per_step: int) -> float:
        """Estimated seconds of a round of ``prompts`` prompts, ``per_step`` groups an optimizer step."""
        explore = max(spent * (prompts / n) ** EXPLORE_SCALING for n, spent in self.explored)
        steps = math.ceil(self.trained_share * prompts / per_step - 1e-9)
        return explore + steps * self.step_seconds + self.fixed

    def prompts_within(self, seconds: float, per_step: int) -> int:
        """The most prompts whose round, stretched by ``MARGIN``, ends within ``seconds`` (0 when none does)."""
        low, high = 0, 1
        while MARGIN * self.seconds(high, per_step) <= seconds and high < 2**30:  # estimates grow with prompts
            low, high = high, high * 2
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if MARGIN * self.seconds(middle, per_step) <= seconds else (low, middle)
        return low


def round_cost(paths: RunPaths) -> RoundCost | None:
    """The last ``LOOKBACK`` finished rounds' costs; None before any round has finished."""
    finished = [r for r in planned_rounds(paths) if r.manifest.is_file()][-LOOKBACK:]
    if not finished:
        return None
    explored, steps, shares = [], [0.0], [0.0]
    for rp in finished:
        prompts = len(Plan.read(rp).prompts)
        explored.append((prompts, sum(read_json(rp.stage(name)).get("seconds", 0.0) for name in ("explore", "score"))))
        update = read_json(rp.stage("update"))
        if update.get("steps"):
            steps.append(update.get("seconds", 0.0) / update["steps"])
        shares.append(update.get("groups_trained", prompts) / prompts)
    fixed = read_json(finished[-1].stage("evaluate")).get("seconds", 0.0)
    return RoundCost(tuple(explored), max(steps), min(1.0, max(shares)), fixed)


def next_round_prompts(config: Config, paths: RunPaths, elapsed_seconds: float) -> int | None:
    """Training prompts for the next round: ``data.prompts_per_round`` (0 = all) when there is no budget or no
    estimate yet, fewer when only fewer fit in what is left of ``run.minutes``, and None when not even one optimizer
    step's worth (``update.prompts_per_step`` prompts) fits: the run stops there."""
    wanted = config.data.prompts_per_round
    cost = round_cost(paths)
    if not config.run.minutes or cost is None:
        return wanted
    step = config.update.prompts_per_step
    fits = cost.prompts_within(config.run.minutes * 60 - elapsed_seconds, step)
    return None if fits < min(step, wanted or step) else min(fits, wanted or fits)

"""The learning benchmark's reward parts, gated on the instructions (an experiment; see docs/RESULTS.md).

The recipe's reward is ``rule:instructions + 0.25 rule:finished + 0.25 rule:repetition + 0.5 rule:min_words:40``.
Over 25 runs, 36% of the groups the update trained on had the same instruction score on every trained candidate,
mostly 0: those groups taught only length and ending. Here the small parts count only for an answer that follows
at least one of the prompt's instructions, so a group in which no candidate follows any instruction scores 0
throughout and is skipped (no signal), while the floor still ranks answers that pass the same instructions::

    tao run --prompts ... --reward rule:instructions --reward scripts/reward_gated.py:small_parts
    python scripts/bench_learning.py ... --tao-scorers "rule:instructions,scripts/reward_gated.py:small_parts"

trl's reward-function signature, as `tao` calls user functions (reward/function.py).
"""

from __future__ import annotations

from typing import Any

from reward.instructions import follow_rate
from reward.scorer import RewardSet
from rollouts.generator import Candidate
from tao.prompts import Message, Prompt

END_OF_TURN = 2  # <|im_end|>, SmolLM2's end of turn: a finished answer's last token
SMALL_PARTS = RewardSet(["rule:finished=0.25", "rule:repetition=0.25", "rule:min_words:40=0.5"])


def small_parts(prompts: list, completions: list, completion_ids: list, **kwargs: Any) -> list[float]:
    asked = [Prompt("x", tuple(Message(m["role"], m["content"]) for m in chat)) for chat in prompts]
    answers = [
        Candidate("x", i, c[0]["content"], tuple(ids), bool(ids) and ids[-1] == END_OF_TURN, "sample")
        for i, (c, ids) in enumerate(zip(completions, completion_ids, strict=True))
    ]
    parts = SMALL_PARTS.totals(asked, answers)
    return [0.0 if follow_rate(p, a.text) == 0 else v for p, a, v in zip(asked, answers, parts, strict=True)]

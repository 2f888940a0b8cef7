"""The learning benchmark's reward parts, gated on the instructions (an experiment; see docs/RESULTS.md).

The recipe's reward is ``rule:instructions + 0.25 rule:finished + 0.25 rule:repetition + 0.5 rule:min_words:40``.
Over 25 runs, 36% of the groups the update trained on had the same instruction score on every trained candidate,
mostly 0: those groups taught only length and ending. Here the small parts count only for an answer that follows
at least one of the prompt's instructions, so a group in which no candidate follows any instruction scores 0
throughout and is skipped (no signal), while the floor still ranks answers that pass the same instructions::

    --tao-scorers "rule:instructions,scripts/reward_gated.py:small_parts"

trl's reward-function signature, as `tao` calls user functions (reward/function.py).
"""

from __future__ import annotations

from typing import Any

from reward.instructions import follow_rate
from tao.prompts import Message, Prompt

END_OF_TURN = 2  # <|im_end|>, SmolLM2's end of turn: a finished answer's last token
MIN_WORDS = 40


def small_parts(prompts: list, completions: list, completion_ids: list, **kwargs: Any) -> list[float]:
    out = []
    for chat, completion, ids in zip(prompts, completions, completion_ids, strict=True):
        prompt = Prompt("x", tuple(Message(m["role"], m["content"]) for m in chat))
        text = completion[0]["content"]
        if follow_rate(prompt, text) == 0:
            out.append(0.0)
            continue
        words = text.lower().split()
        grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
        repetition = len(set(grams)) / len(grams) if grams else 1.0
        finished = float(bool(ids) and ids[-1] == END_OF_TURN)
        out.append(0.25 * finished + 0.25 * repetition + 0.5 * min(1.0, len(words) / MIN_WORDS))
    return out

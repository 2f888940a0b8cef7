"""The learning benchmark's gated reward (scripts/reward_gated.py), loaded as `tao` loads a user's function."""

from pathlib import Path

import pytest

from reward.scorer import RewardSet
from rollouts.generator import Candidate
from tao.prompts import Message, Prompt

GATED = f"{Path(__file__).parents[1] / 'scripts' / 'reward_gated.py'}:small_parts"
RECIPE = ["rule:instructions", "rule:finished=0.25", "rule:repetition=0.25", "rule:min_words:40=0.5"]


def candidate(i, text, finished):
    ids = (5, 6, 2) if finished else (5, 6, 7)  # 2: SmolLM2's end of turn
    return Candidate("p", i, text, ids, finished, "sample")


def test_small_parts_count_only_where_an_instruction_is_followed():
    prompt = Prompt("p", (Message("user", "Describe a lake. Your entire response should be in lowercase letters."),))
    answers = [
        candidate(0, "a quiet lake under pines, still and cold", True),  # follows it
        candidate(1, "A Quiet Lake Under Pines, Still And Cold, " * 6, True),  # does not, longer and finished
        candidate(2, "The Lake", False),  # does not
    ]
    gated = RewardSet(["rule:instructions", GATED]).score([prompt] * 3, answers)
    recipe = RewardSet(RECIPE).score([prompt] * 3, answers)
    assert [s.parts["rule:instructions"] for s in recipe] == [1.0, 0.0, 0.0]
    assert gated[0].total == pytest.approx(recipe[0].total)  # the same reward where an instruction is followed
    assert recipe[1].total > 0.5 and recipe[2].total > 0  # the recipe pays the others for length and ending
    assert gated[1].total == 0.0 and gated[2].total == 0.0


def test_a_prompt_without_detectable_instructions_keeps_the_recipes_small_parts():
    prompt = Prompt("p", (Message("user", "Tell me about lakes."),))
    answers = [candidate(0, "Lakes are bodies of water. " * 8, True), candidate(1, "Water.", False)]
    gated = RewardSet([GATED]).score([prompt] * 2, answers)
    recipe = RewardSet(RECIPE[1:]).score([prompt] * 2, answers)
    assert RewardSet(["rule:instructions"]).totals([prompt] * 2, answers) == [None, None]
    assert [g.total for g in gated] == pytest.approx([r.total for r in recipe])
    assert gated[0].total > gated[1].total > 0

"""`reward.gate`: the scorers after the first count only where the first scores above 0 (or has no opinion)."""

import json
from statistics import mean

import pytest

import tao.guard
from reward.scorer import RewardSet
from tao.core.storage import read_jsonl
from tao.core.types import Candidate, Message, Prompt
from tao.run.paths import RunPaths
from tests.test_loop import tao_run

RECIPE = ["rule:instructions", "rule:finished=0.25", "rule:repetition=0.25", "rule:min_words:40=0.5"]


def candidate(i, text, finished):
    return Candidate("p", i, text, (5, 6, 7), finished, "sample")


def test_small_parts_count_only_where_an_instruction_is_followed():
    prompt = Prompt("p", (Message("user", "Describe a lake. Your entire response should be in lowercase letters."),))
    answers = [
        candidate(0, "there is a quiet lake under the pines, and it is still and very cold", True),  # follows it
        candidate(1, "A Quiet Lake Under Pines, Still And Cold, " * 6, True),  # does not, longer and finished
        candidate(2, "The Lake", False),  # does not
    ]
    gated = RewardSet(RECIPE, gate=True).score([prompt] * 3, answers)
    plain = RewardSet(RECIPE).score([prompt] * 3, answers)
    assert [s.parts for s in gated] == [s.parts for s in plain]  # every part is still recorded
    assert [s.parts["rule:instructions"] for s in plain] == [1.0, 0.0, 0.0]
    assert gated[0].total == pytest.approx(plain[0].total)  # the same reward where an instruction is followed
    assert gated[0].total > 1.0
    assert plain[1].total > 0.5 and plain[2].total > 0  # ungated, the others are paid for length and ending
    assert gated[1].total == 0.0 and gated[2].total == 0.0  # gated: a group of such answers has no signal


def test_a_prompt_without_detectable_instructions_keeps_the_small_parts():
    prompt = Prompt("p", (Message("user", "Tell me about lakes."),))
    answers = [candidate(0, "Lakes are bodies of water. " * 8, True), candidate(1, "Water.", False)]
    gated = RewardSet(RECIPE, gate=True).totals([prompt] * 2, answers)
    assert gated == pytest.approx(RewardSet(RECIPE).totals([prompt] * 2, answers))
    assert gated[0] > gated[1] > 0


def test_a_round_trains_on_the_gated_reward_and_compares_with_a_gated_base(
    tiny_model, prompts_file, tmp_path, monkeypatch
):
    scorers = "reward.scorers=[tests.rewards:letter_a, tests.rewards:constant=0.5]"
    first = tao_run(prompts_file, tiny_model, tmp_path / "run", "--set", scorers)  # round 1 ungated
    assert first.exit_code == 0, first.output
    compared = []  # (base, previous) as the guard got them, rounds 2 and 3
    real = tao.guard.inspect
    monkeypatch.setattr(tao.guard, "inspect", lambda *a, **k: compared.append(a[1:3]) or real(*a, **k))
    more = tao_run(
        prompts_file, tiny_model, tmp_path / "run", "--set", scorers, "--set", "reward.gate=true", "--rounds", 3
    )
    assert more.exit_code == 0, more.output
    paths = RunPaths(tmp_path / "run")

    def gated(row):  # 0 without an 'a' (the constant not paid), else the count plus the constant
        a = row["scores"]["tests.rewards:letter_a"]
        return row["scores"]["tests.rewards:constant"] == 1.0 and row["score"] == (a + 0.5 if a > 0 else 0.0)

    rp = paths.round(2)
    rows = read_jsonl(rp.candidates) + read_jsonl(rp.eval)
    assert all(gated(r) for r in rows) and {r["score"] == 0.0 for r in rows} == {True, False}  # both sides seen
    assert not all(gated(r) for r in read_jsonl(paths.round(1).candidates))  # round 1 paid the constant throughout
    base = [r for r in read_jsonl(paths.baseline_eval) if "|gated|" in r["key"]]  # the base scored anew, gated
    assert len(base) == len(read_jsonl(rp.eval)) and all(gated(r) for r in base)
    assert json.loads(rp.manifest.read_text())["config"]["reward"]["gate"] is True
    # the guard compares round 2 with the base scored gated, not with round 1's answers scored ungated
    figures = json.loads(rp.stage("evaluate").read_text())["guard"]
    ungated_round_1 = mean(r["score"] for r in read_jsonl(paths.round(1).eval))
    assert figures["previous_reward"] == pytest.approx(mean(r["score"] for r in base))
    assert figures["previous_reward"] != pytest.approx(ungated_round_1)
    # round 3, scored like round 2, is compared with round 2's answers (their scores and texts may coincide with
    # the base's: what counts is which answers the guard was given)
    (base_2, previous_2), (base_3, previous_3) = compared
    assert previous_2 is base_2 and previous_3 is not base_3
    assert [a.text for a in previous_3] == [r["text"] for r in read_jsonl(rp.eval)]


def test_a_gate_with_one_scorer_is_a_settings_error(tiny_model, prompts_file, tmp_path):
    result = tao_run(prompts_file, tiny_model, tmp_path / "run", "--set", "reward.gate=true", catch=True)
    assert result.exit_code == 2 and "reward.gate" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()

"""The LLM-judge scorer: parsing what a judge writes, grouping, and the cache that saves a second call."""

import pytest

from reward.judge import JudgeScorer
from reward.scorer import RewardSet
from tao.core.errors import InputError
from tao.core.types import Candidate, Message, Prompt


@pytest.fixture
def rubric(tmp_path):
    path = tmp_path / "rubric.txt"
    path.write_text("Answers must be polite and short.\n")
    return path


class FakeJudge:
    """Stands in for the judge model: replies from a list, and counts the prompts it was asked."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.asked = []

    def generate(self, prompts, sampling, adapter):
        self.asked += prompts
        return [Candidate(p.id, 0, self.replies.pop(0), (), True, "judge") for p in prompts]


def ask(n, prompt_ids):
    prompts = [Prompt(pid, (Message("user", f"question {pid}"),)) for pid in prompt_ids]
    return prompts, [Candidate(p.id, i, f"answer {i}", (), True, "sample") for i, p in enumerate(prompts)]


@pytest.mark.parametrize(
    "reply, score",
    [("8", 7 / 9), ("Score: 10/10", 1.0), ("I'd say 3.", 2 / 9), ("", None), ("excellent!", None), ("0", None)],
)
def test_pointwise_parsing(rubric, tmp_path, monkeypatch, reply, score):
    monkeypatch.setenv("TAO_CACHE", str(tmp_path / "cache"))
    judge = JudgeScorer(f"judge:{rubric}@x", False, "default", False)
    judge._engine = FakeJudge([reply])
    monkeypatch.setattr(JudgeScorer, "_cache_path", lambda self: tmp_path / "cache.jsonl")
    [value] = judge.score(*ask(1, ["a"]))
    assert value == pytest.approx(score) if score is not None else value is None
    assert judge.unparsed == (score is None)


def test_group_judging_scores_a_prompts_candidates_together(rubric, tmp_path, monkeypatch):
    monkeypatch.setattr(JudgeScorer, "_cache_path", lambda self: tmp_path / "cache.jsonl")
    judge = JudgeScorer(f"judge_group:{rubric}", True, "default", False)
    judge._engine = FakeJudge(["A: 7\nB: 2\nC: garbled", "(A) - 10\nB=0"])
    prompts, candidates = ask(5, ["p", "p", "p", "q", "q"])
    assert judge.score(prompts, candidates) == [0.7, 0.2, None, 1.0, 0.0]
    assert judge.unparsed == 1 and len(judge._engine.asked) == 2  # one judge call per group
    assert "Answer A:\nanswer 0" in judge._engine.asked[0].text and "Answer C:" in judge._engine.asked[0].text


def test_the_cache_saves_a_second_judge_call_with_a_real_model(rubric, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("TAO_CACHE", str(tmp_path / "cache"))
    prompts, candidates = ask(3, ["a", "b", "c"])
    first = RewardSet((f"judge:{rubric}@{tiny_model}",))
    scores = first.totals(prompts, candidates)
    judge = first.weighted[0][0]
    assert judge.calls == 3 and judge.unparsed == sum(s is None for s in scores)
    again = RewardSet((f"judge:{rubric}@{tiny_model}",))  # a new process would read the same cache file
    assert again.totals(prompts, candidates) == scores and again.weighted[0][0].calls == 0
    assert again.weighted[0][0]._engine is None  # the judge model was not even loaded
    changed = RewardSet((f"judge:{rubric}@{tiny_model}",))
    changed.totals(prompts, [Candidate(c.prompt_id, c.index, c.text + "!", (), True, "") for c in candidates])
    assert changed.weighted[0][0].calls == 3  # other answers: judged anew


def test_a_missing_or_empty_rubric_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read the rubric"):
        RewardSet((f"judge:{tmp_path / 'nope.txt'}",))
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(InputError, match="the rubric is empty"):
        RewardSet((f"judge:{tmp_path / 'empty.txt'}",))

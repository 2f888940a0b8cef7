"""The exemplars strategy: the run's own best earlier answers shown before similar prompts (rollouts/exemplars.py)."""

from __future__ import annotations

import json

import pytest

import tao.update.round
from rollouts import strategies
from rollouts.exemplars import Exemplar, gather, nearest
from rollouts.strategies import EXEMPLAR_ROOM, load_strategies
from rollouts.transformers_engine import TransformersEngine
from tao.core.config import LoraConfig, ModelConfig
from tao.core.console import Console
from tao.core.model import BaseModel, Policy
from tao.core.specs import parse_strategy
from tao.core.types import Candidate, Message, Prompt, Sampling, Score, Scored
from tests.conftest import TINY, cli


def ask(pid, text, system=None):
    return Prompt(pid, ((Message("system", system),) if system else ()) + (Message("user", text),))


def row(pid, score, text="", finished=True):
    return Scored(Candidate(pid, 0, text, (1,), finished, "sample"), Score(score, {}))


class Recording:
    """A generator that records the prompts it was asked and answers with the real engine."""

    def __init__(self, engine):
        self.engine, self.tokenizer, self.asked = engine, engine.tokenizer, []

    def generate_many(self, asks, adapter):
        self.asked.extend(p for ask in asks for p in ask.prompts)
        return self.engine.generate_many(asks, adapter)


@pytest.fixture(scope="module")
def engine(tiny_model):
    return TransformersEngine(
        Policy(BaseModel("tiny", tiny_model, "x"), ModelConfig(), LoraConfig()), 32, Console(True)
    )


def test_a_bad_exemplars_count_is_refused():
    with pytest.raises(ValueError, match=r"exemplars takes a whole number \(>= 1\)"):
        parse_strategy("exemplars:0")
    assert parse_strategy("exemplars:3=0.5").arg == "3"


def test_each_prompts_best_finished_answer_in_the_top_tenth_is_an_exemplar():
    a, b, c = ask("a", "lowercase please"), ask("b", "json please"), ask("c", "three bullets")
    first = [row("a", 1.0, "a cut off", finished=False), row("a", 0.9, "a good"), row("b", 0.95, "b good")]
    first += [row("c", 0.1, "c weak")] * 17 + [row("c", None, "c unscored")]
    # 20 scores: the top tenth starts at the 18th lowest, 0.9 (a tie with the cut is kept); c's best is below it
    assert {e.prompt.id: (e.answer, e.score) for e in gather([([a, b, c], first)])} == {
        "a": ("a good", 0.9),
        "b": ("b good", 0.95),
    }
    second = [row("a", 0.99, "a better")]  # a later round's better answer replaces it; the cut rises to 0.95
    found = gather([([a, b, c], first), ([a], second)])
    assert {e.prompt.id: e.answer for e in found} == {"a": "a better", "b": "b good"}
    assert gather([([a], [row("a", 1.0, "   ")])]) == []  # an empty answer shows nothing
    assert gather([]) == []


def test_the_nearest_exemplars_share_the_requests_words_and_are_never_the_prompt_itself():
    shown = [
        Exemplar(ask("cats", "Write about cats. Your answer must be in lowercase letters."), "cats are fine", 1.0),
        Exemplar(ask("json", "Describe dogs. Wrap your whole answer in JSON."), '{"dogs": 1}', 1.0),
        Exemplar(ask("bullets", "List three fruits as bullet points."), "* a\n* b\n* c", 1.0),
        Exemplar(ask("q", "Write a poem in lowercase letters."), "the same prompt", 1.0),
    ]
    (near,) = nearest([ask("q", "Write a poem in lowercase letters.")], shown, 2)
    assert [e.prompt.id for e in near][-1] == "cats"  # the most similar last, next to the prompt
    assert "q" not in [e.prompt.id for e in near] and len(near) == 2
    (near,) = nearest([ask("x", "Tell me about birds. Wrap it in JSON.")], shown, 1)
    assert [e.prompt.id for e in near] == ["json"]


def test_exemplars_are_earlier_turns_and_the_candidates_answer_the_plain_prompt(engine):
    spy = Recording(engine)
    chosen = load_strategies(["exemplars"], 2)
    prompt = ask("q", "write a poem in lowercase letters", system="be brief")
    first, _ = strategies.explore(spy, [prompt], chosen, Sampling(2, 1.0, 1.0, 6, 0), None, lambda p, c: [])
    assert spy.asked == [prompt]  # nothing shown yet: a plain sample
    assert {c.context for c in first} == {"no exemplar yet: a plain sample"}
    huge = " ".join(["word"] * (EXEMPLAR_ROOM + 10))
    shown = [
        Exemplar(ask("e1", "an essay about trains"), "trains run", 1.0),
        Exemplar(ask("e2", "a poem about rivers in lowercase letters"), "rivers flow", 1.0),
        Exemplar(ask("e3", "write a poem in lowercase letters"), huge, 1.0),  # the nearest, but it does not fit
    ]
    spy.asked.clear()
    out, spent = strategies.explore(spy, [prompt], chosen, Sampling(2, 1.0, 1.0, 6, 0), None, lambda p, c: [], shown)
    (asked,) = spy.asked
    assert [(m.role, m.content) for m in asked.messages] == [
        ("system", "be brief"),
        ("user", "an essay about trains"),
        ("assistant", "trains run"),
        ("user", "a poem about rivers in lowercase letters"),
        ("assistant", "rivers flow"),
        ("user", "write a poem in lowercase letters"),
    ]
    assert [(c.prompt_id, c.strategy, c.context) for c in out] == [("q", "exemplars", "after exemplars e1, e2")] * 2
    assert spent["exemplars"]["exemplars_available"] == 3


def test_the_second_round_shows_the_first_rounds_best_answers(tiny_model, prompts_file, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    sets = [x for s in [*TINY, "rollout.strategies=[sample, exemplars]"] for x in ("--set", s)]
    result = cli("run", "--prompts", prompts_file, "--model", tiny_model, "--run-dir", run_dir, "--quiet", *sets)
    assert result.exit_code == 0, result.output
    first = run_dir / "round-0001/candidates.jsonl"
    rows = [json.loads(x) for x in first.read_text().splitlines()]
    assert {r["context"] for r in rows if r["strategy"] == "exemplars"} == {"no exemplar yet: a plain sample"}
    best = sorted({r["prompt_id"] for r in rows})[:2]  # two of round 1's prompts get a finished, top-scored answer
    for pid in best:
        r = next(r for r in rows if r["prompt_id"] == pid)
        r.update(finished=True, score=99.0, text=f"EXEMPLAR {pid}")
    first.write_text("".join(json.dumps(r) + "\n" for r in rows))
    trained = []
    real = tao.update.round.grpo_update
    monkeypatch.setattr(
        tao.update.round, "grpo_update", lambda m, t, groups, *a: trained.extend(groups) or real(m, t, groups, *a)
    )
    result = cli(
        "run",
        "--prompts",
        prompts_file,
        "--model",
        tiny_model,
        "--run-dir",
        run_dir,
        "--quiet",
        *sets,
        "--rounds",
        "2",
    )
    assert result.exit_code == 0, result.output
    second = [json.loads(x) for x in (run_dir / "round-0002/candidates.jsonl").read_text().splitlines()]
    contexts = {r["prompt_id"]: r["context"] for r in second if r["strategy"] == "exemplars"}
    assert contexts
    for pid, context in contexts.items():
        assert context.startswith("after exemplars ")
        assert set(context.removeprefix("after exemplars ").split(", ")) == set(best) - {pid}
    metrics = json.loads((run_dir / "round-0002/metrics.json").read_text())
    assert metrics["explore"]["strategies"]["exemplars"]["exemplars_available"] == 2
    assert trained and all("#" not in g.prompt.id and len(g.prompt.messages) <= 2 for g in trained)

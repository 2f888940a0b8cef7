"""Exploration strategies on the tiny model with stub scorers."""

from __future__ import annotations

import hashlib
import json

import pytest

import tao.update.round
from rollouts import strategies
from rollouts.strategies import REFINE, THINK, allocate, load_strategies
from rollouts.transformers_engine import TransformersEngine
from tao.core.config import LoraConfig, ModelConfig
from tao.core.console import Console
from tao.core.errors import InputError
from tao.core.model import BaseModel, Policy, chat_token_ids
from tao.core.specs import parse_strategy
from tao.core.types import Ask, Candidate, Message, Prompt, Sampling
from tests.conftest import TINY, cli


@pytest.fixture(scope="module")
def engine(tiny_model):
    return TransformersEngine(
        Policy(BaseModel("tiny", tiny_model, "x"), ModelConfig(), LoraConfig()), 32, Console(True)
    )


def prompts(n=3):
    return [Prompt(f"q{i}", (Message("user", f"write a short answer number {i}"),)) for i in range(n)]


class Counting:
    """The engine, recording each ``generate_many`` call as its requests' (prompts, candidates per prompt)."""

    def __init__(self, engine):
        self.engine, self.tokenizer, self.calls = engine, engine.tokenizer, []

    def generate_many(self, asks, adapter):
        self.calls.append([(len(ask.prompts), ask.sampling.n) for ask in asks])
        return self.engine.generate_many(asks, adapter)


def by_length(prompts, candidates):
    return [float(len(c.token_ids)) + (hash(c.text) % 7) / 10 for c in candidates]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "unknown strategy 'nope'"),
        ("sample=0", "the share must be > 0"),
        ("guide", "guide needs a file"),
        ("ladder:hot", "LOW-HIGH"),
        ("refine:0", r"whole number \(>= 1\)"),
        ("best_of:1", r"whole number \(>= 2\)"),
        ("think:x", "think takes no argument"),
        ("greedy:x", "greedy takes no argument"),
        ("greedy=2", "greedy is always one candidate"),
        ("repair:x", "repair takes no argument"),
    ],
)
def test_bad_specs_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_strategy(spec)


def test_a_bad_strategy_setting_is_a_one_line_error_before_any_work(tiny_model, prompts_file, tmp_path):
    result = cli("run", "--prompts", prompts_file, "--run-dir", tmp_path / "r", "--set", "rollout.strategies=[warp]")
    assert result.exit_code == 2 and "rollout.strategies: 'warp': unknown strategy" in result.output
    missing = tmp_path / "missing.txt"
    result = cli(
        "run",
        "--prompts",
        prompts_file,
        "--model",
        tiny_model,
        "--run-dir",
        tmp_path / "r",
        "--set",
        f"rollout.strategies=[guide:{missing}]",
    )
    assert result.exit_code == 2 and str(missing) in result.output and "cannot read the guide file" in result.output
    assert not (tmp_path / "r").exists()


def test_the_mix_honours_the_shares():
    specs = [parse_strategy(s) for s in ("sample=0.5", "best_of=0.25", "refine=0.25")]
    assert allocate(specs, 8) == [4, 2, 2]
    assert allocate(specs, 3) == [1, 1, 1]
    assert allocate([parse_strategy("sample=3"), parse_strategy("think")], 10) == [7, 3]
    for n in range(3, 17):
        counts = allocate(specs, n)
        assert sum(counts) == n and min(counts) >= 1
    with pytest.raises(InputError, match="3 strategies for 2 candidates"):
        load_strategies(["sample", "think", "refine"], 2)


def test_greedy_is_one_candidate_and_the_others_share_the_rest():
    specs = [parse_strategy(s) for s in ("sample=2", "think", "refine", "best_of:2", "greedy")]
    assert allocate(specs, 8) == [2, 2, 2, 1, 1]
    for n in range(5, 17):
        counts = allocate(specs, n)
        assert sum(counts) == n and counts[-1] == 1 and min(counts) >= 1
    assert allocate([parse_strategy("greedy"), parse_strategy("sample")], 6) == [1, 5]
    assert allocate([parse_strategy("greedy")], 1) == [1]
    for specs, n in ((["greedy", "sample", "greedy"], 8), (["greedy"], 4)):
        with pytest.raises(InputError, match="greedy is one candidate, listed once"):
            load_strategies(specs, n)


def test_the_greedy_candidate_is_the_models_greedy_answer(engine):
    out, spent = strategies.explore(
        engine, prompts(2), load_strategies(["sample", "greedy"], 3), Sampling(3, 1.0, 1.0, 8, 0), None, by_length
    )
    greedy = [c for c in out if c.strategy == "greedy"]
    assert [(c.prompt_id, c.index, c.context) for c in greedy] == [("q0", 2, "T=0"), ("q1", 2, "T=0")]
    expected = engine.generate(prompts(2), Sampling(1, 0.0, 1.0, 8, seed=123), None)  # greedy: the seed is moot
    assert [c.token_ids for c in greedy] == [c.token_ids for c in expected]
    assert spent["greedy"] == {"candidates": 2, "tokens": sum(len(c.token_ids) for c in greedy)}
    assert sum(c.strategy == "sample" for c in out) == 4


def test_each_strategy_tags_its_candidates_and_answers_the_plain_prompt(engine, tmp_path):
    guide = tmp_path / "guides.txt"
    guide.write_text("Answer in lowercase.\n---\nAnswer in one sentence.\n")
    specs = ["sample", "ladder:0.5-1.1", "think", f"guide:{guide}", "refine", "best_of:3"]
    chosen = load_strategies(specs, 7)
    sampling = Sampling(7, 0.9, 1.0, 8, seed=0)
    out, spent = strategies.explore(engine, prompts(), chosen, sampling, None, by_length)
    assert [(c.prompt_id, c.index) for c in out] == [(f"q{i}", j) for i in range(3) for j in range(7)]
    names = [s.name for s in chosen]
    assert [c.strategy for c in out[:7]] == [
        "sample",
        "sample",
        "ladder:0.5-1.1",
        "think",
        f"guide:{guide}",
        "refine",
        "best_of:3",
    ]
    assert set(spent) == set(names) and all(c.context for c in out)
    guides_sha = hashlib.sha256(b"Answer in lowercase.\n---\nAnswer in one sentence.").hexdigest()
    assert spent[f"guide:{guide}"]["guides_sha256"] == guides_sha  # what was used, even if the file changes
    assert {c.context for c in out if c.strategy == "ladder:0.5-1.1"} == {"T=0.80"}  # one rung: the middle
    assert spent["refine"]["tokens"] > sum(len(c.token_ids) for c in out if c.strategy == "refine")  # drafts too
    assert spent["best_of:3"]["tokens"] > sum(len(c.token_ids) for c in out if c.strategy == "best_of:3")  # pool
    assert all(c.logprobs is None for c in out if c.strategy not in ("sample", "best_of:3"))


def test_best_of_keeps_exactly_the_top_k_by_score(engine):
    seen = []

    def recording(ps, cs):
        values = by_length(ps, cs)
        seen.extend(zip([c.prompt_id for c in cs], values, strict=True))
        return values

    out, _ = strategies.explore(
        engine, prompts(2), load_strategies(["best_of:4"], 3), Sampling(3, 1.0, 1.0, 10, 0), None, recording
    )
    assert len(seen) == 2 * 12
    for pid in ("q0", "q1"):
        pool = sorted((v for p, v in seen if p == pid), reverse=True)
        kept = sorted(by_length(None, [c for c in out if c.prompt_id == pid]), reverse=True)
        assert kept == pool[:3]


@pytest.mark.parametrize(("n", "calls"), [(2, [(6, 1)]), (3, [(3, 2), (3, 1)])])
def test_guide_variants_with_as_many_candidates_share_one_request(engine, tmp_path, n, calls):
    """Two variants, one candidate each: one request of both variants' prompts, not a small one per variant."""
    guide = tmp_path / "guides.txt"
    guide.write_text("Answer in lowercase.\n---\nAnswer in one sentence.\n")
    counting = Counting(engine)
    out, spent = strategies.explore(
        counting, prompts(), load_strategies([f"guide:{guide}"], n), Sampling(n, 1.0, 1.0, 6, 0), None, by_length
    )
    assert counting.calls == [calls]
    assert [(c.prompt_id, c.index) for c in out] == [(f"q{i}", j) for i in range(3) for j in range(n)]
    for i in range(3):  # each prompt's candidates take the variants in turn, and say which
        mine = [c.context[: len("guide 1")] for c in out if c.prompt_id == f"q{i}"]
        assert sorted(mine) == sorted(f"guide {v % 2 + 1}" for v in range(n))
    assert spent[f"guide:{guide}"]["tokens"] == sum(len(c.token_ids) for c in out)


def test_every_strategys_first_requests_go_to_the_engine_together(engine, tmp_path):
    """The preset's mix asks the engine once per exploration (refine's rewrites, which need the drafts, after), and
    the transformers engine decodes the requests that sample alike as one stream: fewer decode steps than one
    stream each, with every request's candidates where the request's own call would put them."""
    guide = tmp_path / "guides.txt"
    guide.write_text("Answer in lowercase.\n---\nAnswer in one sentence.\n")
    counting = Counting(engine)
    chosen = load_strategies(["sample=2", "think", f"guide:{guide}", "best_of:2"], 8)
    out, _ = strategies.explore(counting, prompts(), chosen, Sampling(8, 1.0, 1.0, 12, 0), None, by_length)
    assert counting.calls == [[(3, 2), (3, 2), (6, 1), (3, 4)]] and len(out) == 3 * 8

    small = TransformersEngine(engine.policy, 16, Console(True))  # room for both requests' 12 rows at once
    asks = [
        Ask(tuple(prompts()), Sampling(2, 1.0, 1.0, 12, seed=1)),
        Ask(tuple(prompts(2)), Sampling(3, 1.0, 1.0, 12, 2)),
    ]
    steps = []
    with small.policy.attached(None) as model:
        hook = model.register_forward_pre_hook(
            lambda module, args, kwargs: steps.append(kwargs["input_ids"].shape[1] == 1), with_kwargs=True
        )
    together = small.generate_many(asks, None)  # the second's rows decode beside the first's
    together_steps, steps[:] = sum(steps), []
    apart = [small.generate(list(ask.prompts), ask.sampling, None) for ask in asks]
    hook.remove()
    assert together_steps < sum(steps)
    for ask, mine, alone in zip(asks, together, apart, strict=True):
        assert [(c.prompt_id, c.index) for c in mine] == [(c.prompt_id, c.index) for c in alone]
        assert [(c.prompt_id, c.index) for c in mine] == [(p.id, j) for p in ask.prompts for j in range(ask.sampling.n)]
        assert all(len(c.logprobs) == len(c.token_ids) > 0 for c in mine)


def test_think_keeps_the_final_answer_only(engine):
    eos = engine.tokenizer.eos_token_id
    c = Candidate("q", 0, "the rules: lowercase.\nFinal answer: hello world", (5, 6, 7, eos), True, "think")
    kept = strategies._final_answer(engine, c)
    assert kept.text == "hello world"
    assert kept.token_ids == (*engine.tokenizer.encode("hello world", add_special_tokens=False), eos)
    assert strategies._final_answer(engine, Candidate("q", 0, "no marker", (5,), False, "think")).text == "no marker"


def test_repair_offers_the_fixed_draft_retokenized(engine):
    def shout(prompt, text):  # a repairer: q0's drafts get fixed, q1's have nothing to fix
        return text.upper() + " END" if prompt.id == "q0" else text

    sampling = Sampling(2, 1.0, 1.0, 8, seed=3)
    chosen = load_strategies(["repair"], 2)
    out, spent = strategies.explore(engine, prompts(2), chosen, sampling, None, by_length, repair=shout)
    drafts = engine.generate(prompts(2), sampling, None)  # the same seed: the drafts repair started from
    eos = engine.tokenizer.eos_token_id
    for c, d in zip(out, drafts, strict=True):
        assert c.strategy == "repair"
        if c.prompt_id == "q1":
            assert (c.text, c.token_ids, c.context) == (d.text, d.token_ids, "nothing to repair: a plain sample")
            continue
        ids = engine.tokenizer.encode(d.text.upper() + " END", add_special_tokens=False)
        finished = d.finished and len(ids) < 8
        expected = (*ids, eos) if finished else tuple(ids[:8])
        assert (c.token_ids, c.finished, c.logprobs) == (expected, finished, None)
        assert c.text == (d.text.upper() + " END" if finished else engine.tokenizer.decode(ids[:8]))
        assert c.context.startswith("repaired: ")
    assert spent["repair"] == {"candidates": 4, "tokens": sum(len(d.token_ids) for d in drafts)}
    with pytest.raises(ValueError, match="needs the reward's fixes"):
        strategies.explore(engine, prompts(1), chosen, sampling, None, by_length)


def test_repair_without_an_instruction_scorer_is_a_config_error(tiny_model, prompts_file, tmp_path):
    sets = ["rollout.strategies=[sample, repair]", "reward.scorers=[rule:finished]"]
    args = [x for s in sets for x in ("--set", s)]
    result = cli("run", "--prompts", prompts_file, "--model", tiny_model, "--run-dir", tmp_path / "r", *args)
    assert result.exit_code == 2 and "rollout.strategies: repair fixes the instructions of a scorer" in result.output
    assert not (tmp_path / "r").exists()


def test_a_round_trains_on_the_plain_prompts_and_reports_per_strategy(tiny_model, prompts_file, tmp_path, monkeypatch):
    trained = []
    real = tao.update.round.grpo_update

    def capture(model, tokenizer, groups, *args):
        trained.extend(groups)
        return real(model, tokenizer, groups, *args)

    monkeypatch.setattr(tao.update.round, "grpo_update", capture)
    guide = tmp_path / "guide.txt"
    guide.write_text("GUIDE-TEXT: answer like a pirate.")
    run_dir = tmp_path / "run"
    mix = f"rollout.strategies=[sample=2, think, refine, guide:{guide}]"
    sets = [x for s in [*TINY, "rollout.num_candidates=5", mix] for x in ("--set", s)]
    result = cli("run", "--prompts", prompts_file, "--model", tiny_model, "--run-dir", run_dir, "--quiet", *sets)
    assert result.exit_code == 0, result.output
    assert len(trained) == 4
    for group in trained:
        assert group.prompt_ids == tuple(chat_token_ids(engine_tokenizer(tiny_model), group.prompt))
        text = engine_tokenizer(tiny_model).decode(group.prompt_ids)
        assert THINK[:30] not in text and REFINE[:30] not in text and "GUIDE-TEXT" not in text
        assert "#" not in group.prompt.id  # the plain prompt, not a strategy's derived one
    rows = [json.loads(x) for x in (run_dir / "round-0001/candidates.jsonl").read_text().splitlines()]
    assert {r["strategy"] for r in rows} == {"sample", "think", "refine", f"guide:{guide}"}
    metrics = json.loads((run_dir / "round-0001/metrics.json").read_text())
    assert set(metrics["score"]["strategies"]) == set(metrics["explore"]["strategies"])
    assert metrics["score"]["strategies"]["sample"]["candidates"] == 4 * 2
    report = (run_dir / "report.md").read_text()
    assert "| refine | 4 |" in report and "tokens generated" in report


def engine_tokenizer(path):
    from tao.core.model import load_tokenizer

    return load_tokenizer(BaseModel("tiny", path, "x"), ModelConfig())


def test_tao_explore_writes_scored_candidates_and_a_per_strategy_table(tiny_model, prompts_file, tmp_path):
    out = tmp_path / "found" / "candidates.jsonl"
    sets = ["rollout.num_candidates=4", "rollout.max_new_tokens=6", "rollout.strategies=[sample, best_of:2]"]
    args = ["explore", "--prompts", prompts_file, "--out", out, "--model", tiny_model, "--limit", 5, "--quiet"]
    result = cli(*args, "--reward", "tests.rewards:letter_a", *(x for s in sets for x in ("--set", s)))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 5 * 4 and {r["strategy"] for r in rows} == {"sample", "best_of:2"}
    assert all(isinstance(r["score"], float) and r["context"] for r in rows)
    lines = result.output.splitlines()
    assert lines[0] == f"5 prompts x 4 candidates, signal in {lines[0].split('signal in ')[1]}"
    assert any(line.startswith("| best_of:2 | 10 |") for line in lines)
    assert any(line.startswith("| sample | 10 |") for line in lines) and lines[-1] == f"wrote {out}"
    bad = cli("explore", "--prompts", prompts_file, "--out", out, "--adapter", tmp_path)
    assert bad.exit_code == 2 and "adapter_model.safetensors" in bad.output

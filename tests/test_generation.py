import pytest

from rollouts.transformers_engine import TransformersEngine
from tao.core.config import LoraConfig, ModelConfig
from tao.core.console import Console
from tao.core.model import BaseModel, Policy
from tao.core.types import Message, Prompt, Sampling


@pytest.fixture(scope="module")
def generator(tiny_model):
    policy = Policy(BaseModel("tiny", tiny_model, "x"), ModelConfig(dtype="float32"), LoraConfig())
    return TransformersEngine(policy, batch_size=8, console=Console(True))


def prompts(n):
    return [Prompt(f"q{i}", (Message("user", "hello world " * (i + 1)),)) for i in range(n)]


def test_candidates_per_prompt_grouped_in_input_order(generator):
    out = generator.generate(prompts(3), Sampling(n=4, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=0), None)
    assert [(c.prompt_id, c.index) for c in out] == [(f"q{i}", j) for i in range(3) for j in range(4)]
    eos = generator.tokenizer.eos_token_id
    for c in out:
        assert 1 <= len(c.token_ids) <= 12 and c.strategy == "sample"
        assert c.finished == (c.token_ids[-1] == eos) and eos not in c.token_ids[:-1]
        body = c.token_ids[:-1] if c.finished else c.token_ids
        assert c.text == generator.tokenizer.decode(body, skip_special_tokens=True)


def test_sampling_is_reproducible_under_a_seed(generator):
    s = Sampling(n=3, temperature=1.0, top_p=0.9, max_new_tokens=10, seed=5)
    first = generator.generate(prompts(2), s, None)
    assert first == generator.generate(prompts(2), s, None)
    other = generator.generate(prompts(2), Sampling(3, 1.0, 0.9, 10, seed=6), None)
    assert [c.token_ids for c in other] != [c.token_ids for c in first]
    assert len({c.token_ids for c in first}) > 1  # the samples in a group differ


def test_greedy_is_batch_independent(generator):
    """Left padding and the attention mask are right: a prompt's greedy answer does not depend on its batch."""
    greedy = Sampling(n=1, temperature=0.0, top_p=1.0, max_new_tokens=10, seed=0)
    batch = generator.generate(prompts(5), greedy, None)
    alone = [generator.generate([p], greedy, None)[0] for p in prompts(5)]
    assert [c.token_ids for c in batch] == [c.token_ids for c in alone]
    assert all(c.strategy == "greedy" for c in batch)


def test_prompt_goes_through_the_chat_template(generator):
    ids = generator.prompt_token_ids(Prompt("x", (Message("system", "sys"), Message("user", "hi"))))
    text = generator.tokenizer.decode(ids)
    assert text == "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_greedy_with_several_candidates_is_refused():
    with pytest.raises(ValueError):
        Sampling(n=2, temperature=0.0, top_p=1.0, max_new_tokens=4, seed=0)

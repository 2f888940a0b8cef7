"""Fixtures: a tiny chat model built offline (random weights, a BPE tokenizer trained here), no network."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ["HF_HUB_OFFLINE"] = "1"

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "write a short answer in lowercase letters without commas",
    'hello world, this is a tiny model for tests. It answers in JSON: {"a": 1}',
    "system user assistant prompt completion reward score round adapter",
    "0 1 2 3 4 5 6 7 8 9 * - bullet points and sentences. Paragraphs!",
] * 20


def build_tiny_model(path: Path, seed: int = 0, initializer_range: float = 0.02) -> Path:
    """A 2-layer Llama (head_dim 32) with a ChatML byte-level BPE tokenizer; pad = eos = <|im_end|>.

    With the default initializer its greedy answers are one token repeated; a larger ``initializer_range``
    gives peaked logits and answers that differ from prompt to prompt.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    core.train_from_iterator(CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        padding_side="left",
    )
    tokenizer.chat_template = CHATML
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        initializer_range=initializer_range,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Model hashes and conversions go to a temporary cache, never the user's."""
    monkeypatch.setenv("TAO_CACHE", str(tmp_path_factory.getbasetemp() / "tao-cache"))


def cli(*args: object) -> object:
    """Run ``tao ARGS...`` in this process (Path arguments are fine); returns click's Result."""
    from click.testing import CliRunner

    from tao.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def prompts_file(tmp_path: Path) -> Path:
    """Twelve prompts in the three accepted formats."""
    rows: list = []
    for i in range(12):
        text = f"write a short answer number {i} in lowercase letters"
        if i % 3 == 0:
            rows.append({"prompt": text, "id": f"p{i}", "topic": "t"})
        elif i % 3 == 1:
            rows.append({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]})
        else:
            rows.append(
                {
                    "custom_id": f"r{i}",
                    "body": {"model": "m", "messages": [{"role": "user", "content": text}]},
                }
            )
    return write_jsonl(tmp_path / "logs.jsonl", rows)


# Settings that make a whole round on the tiny model take seconds.
# float32 on any device, so that a GPU machine compares its answers with CPU recomputations exactly.
TINY = [
    "model.dtype=float32",
    "data.holdout=0.25",
    "data.prompts_per_round=4",
    "rollout.num_candidates=4",
    "rollout.max_new_tokens=8",
    "rollout.batch_size=16",
    "update.prompts_per_step=2",
    "update.learning_rate=1e-3",
    "eval.max_prompts=3",
    "reward.scorers=[tests.rewards:letter_a]",
]

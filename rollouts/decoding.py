"""The transformers engine's decode loop: a KV cache filled in place, grouped-query attention read without copies,
finished answers leaving the batch, sampling without a draw per vocabulary entry.

Written by hand because ``generate`` does none of these on a CPU: its cache concatenates the whole past every step,
its SDPA path copies each key and value head once per query head when the batch is padded, it decodes finished
rows to the end, and ``multinomial`` draws one random number per vocabulary entry (49k at the default model). Its
static cache with ``torch.compile`` was slower still here (docs/BENCHMARKS.md, "Exploration speed").

The tokens come from the same model, the same logits and the same distribution as ``generate`` (temperature, then
top-p); each sampled token's log-probability under that distribution is recorded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.cache_utils import Cache, DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from tao.core.types import Sampling

ATTENTION = "tao_grouped_sdpa"


def grouped_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any) -> Any:
    """SDPA; in a one-token decode step of grouped-query attention, the query heads that share a key head become
    rows of one query, so the cached keys and values are read in place instead of copied for every query head."""
    batch, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    if length != 1 or heads == kv_heads or kwargs.get("dropout") or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    grouped = query.view(batch, kv_heads, heads // kv_heads, dim)
    out = torch.nn.functional.scaled_dot_product_attention(
        grouped, key, value, attn_mask=attention_mask, scale=kwargs.get("scaling"), is_causal=False
    )
    return out.view(batch, 1, heads, dim), None


AttentionInterface.register(ATTENTION, grouped_attention)
AttentionMaskInterface.register(ATTENTION, sdpa_mask)


class GrowingLayer(DynamicLayer):
    """One layer's keys and values in buffers sized for the whole answer: each step writes its token in place and
    attention reads a view of what is filled."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        batch, heads, _, dim = key_states.shape
        self.key_buffer = key_states.new_empty((batch, heads, self.capacity, dim))
        self.value_buffer = value_states.new_empty((batch, heads, self.capacity, value_states.shape[-1]))
        self.is_initialized = True

    def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        self.key_buffer[:, :, self.length : end] = key_states
        self.value_buffer[:, :, self.length : end] = value_states
        self.length = end
        self.keys, self.values = self.key_buffer[:, :, :end], self.value_buffer[:, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def batch_repeat_interleave(self, repeats: int) -> None:
        self.key_buffer = self.key_buffer.repeat_interleave(repeats, dim=0)
        self.value_buffer = self.value_buffer.repeat_interleave(repeats, dim=0)

    def batch_select_indices(self, indices: Any) -> None:
        """Keep the rows ``indices``, copying only the filled part of the buffers."""
        for name in ("key_buffer", "value_buffer"):
            old = getattr(self, name)
            new = old.new_empty((len(indices), *old.shape[1:]))
            new[:, :, : self.length] = old[indices, :, : self.length]
            setattr(self, name, new)


@dataclass
class Decoded:
    """One decoded answer: its tokens (ending with the stop token when finished), and each token's
    log-probability under the distribution it was sampled from (None for greedy decoding)."""

    token_ids: list[int]
    logprobs: list[float] | None


@contextmanager
def grouped_attention_on(model: Any) -> Iterator[None]:
    """The model attends with :func:`grouped_attention` for the duration (the update trains it with its own)."""
    config = model.config
    before = config._attn_implementation
    config._attn_implementation = ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = before


def choose(logits: Any, sampling: Sampling, generator: Any) -> tuple[Any, Any]:
    """The next token of each row (greedy: the argmax; else sampled from softmax(logits / T) cut to top-p, by the
    inverse of its cumulative distribution: one uniform draw a row) and its log-probability (None when greedy)."""
    if sampling.temperature == 0:
        return logits.argmax(-1), None
    scores = logits.float() / sampling.temperature
    if sampling.top_p < 1.0:
        # As transformers' TopPLogitsWarper: drop the least likely tokens whose total is at most 1 - top_p.
        ordered, order = torch.sort(scores, descending=False)
        drop = ordered.softmax(-1).cumsum(-1) <= 1 - sampling.top_p
        drop[:, -1] = False
        scores = scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    probs = torch.softmax(scores, -1)
    cdf = probs.cumsum(-1)
    draw = torch.rand((len(scores), 1), generator=generator, device=scores.device) * cdf[:, -1:]
    tokens = torch.searchsorted(cdf, draw, right=True).clamp_(max=scores.shape[-1] - 1)
    return tokens[:, 0], probs.gather(1, tokens)[:, 0].log()


class Batch:
    """The rows still decoding: their position in the output, attention mask, next position and the cache."""

    def __init__(self, cache: Cache, mask: Any, positions: Any, capacity: int):
        rows, width = mask.shape
        self.cache = cache
        self.mask = mask.new_zeros((rows, capacity))
        self.mask[:, :width] = mask
        self.length = width
        self.next_position = positions[:, -1:] + 1
        self.rows = list(range(rows))  # output index of each row

    def step_inputs(self) -> dict[str, Any]:
        self.mask[:, self.length] = True
        self.length += 1
        inputs = {"attention_mask": self.mask[:, : self.length], "position_ids": self.next_position}
        self.next_position = self.next_position + 1
        return inputs

    def keep(self, keep: list[int]) -> None:
        """Drop every row but those at ``keep`` (positions in the current batch)."""
        index = torch.tensor(keep, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.mask = self.mask[index]
        self.next_position = self.next_position[index]
        self.rows = [self.rows[k] for k in keep]


def decode(
    model: Any, prompt_ids: Sequence[list[int]], sampling: Sampling, stop_ids: Sequence[int], pad_id: int, seed: int
) -> list[Decoded]:
    """``sampling.n`` answers to each prompt (grouped by prompt, in order), reproducible under ``seed``: the
    prompts prefilled once each, left-padded, then decoded together; finished rows leave the batch once they are a
    quarter of it."""
    n = sampling.n
    device = next(model.parameters()).device
    width = max(len(ids) for ids in prompt_ids)
    capacity = width + sampling.max_new_tokens
    input_ids = torch.tensor([[pad_id] * (width - len(ids)) + list(ids) for ids in prompt_ids], device=device)
    mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompt_ids], device=device).bool()
    positions = (mask.long().cumsum(-1) - 1).masked_fill(~mask, 0)  # as generate numbers left-padded rows
    layers = model.config.get_text_config().num_hidden_layers
    cache = Cache(layers=[GrowingLayer(capacity) for _ in range(layers)])
    generator = torch.Generator(device).manual_seed(seed)
    stop = set(stop_ids)
    answers = [Decoded([], None if sampling.temperature == 0 else []) for _ in range(len(prompt_ids) * n)]
    with grouped_attention_on(model), torch.inference_mode():
        prefill = model(
            input_ids=input_ids, attention_mask=mask, position_ids=positions, past_key_values=cache, logits_to_keep=1
        )
        logits = prefill.logits[:, -1].repeat_interleave(n, dim=0)
        cache.batch_repeat_interleave(n)
        batch = Batch(cache, mask.repeat_interleave(n, dim=0), positions.repeat_interleave(n, dim=0), capacity)
        done = [False] * len(answers)  # per row of the batch
        for step in range(sampling.max_new_tokens):
            chosen, chosen_logprobs = choose(logits, sampling, generator)
            chosen = chosen.tolist()
            values = [None] * len(chosen) if chosen_logprobs is None else chosen_logprobs.tolist()
            for k, (token, value) in enumerate(zip(chosen, values, strict=True)):
                if done[k]:
                    chosen[k] = pad_id
                    continue
                answer = answers[batch.rows[k]]
                answer.token_ids.append(token)
                if answer.logprobs is not None:
                    answer.logprobs.append(value)
                done[k] = token in stop
            if all(done) or step == sampling.max_new_tokens - 1:
                break
            if sum(done) * 4 >= len(done):
                keep = [k for k, d in enumerate(done) if not d]
                batch.keep(keep)
                chosen, done = [chosen[k] for k in keep], [False] * len(keep)
            step_ids = torch.tensor(chosen, device=device)[:, None]
            logits = model(input_ids=step_ids, past_key_values=cache, logits_to_keep=1, **batch.step_inputs()).logits
            logits = logits[:, -1]
    return answers

"""The transformers engine's decode loop: a KV cache filled in place, grouped-query attention read without copies,
finished answers leaving the batch and waiting prompts taking their places, sampling without a draw per vocabulary
entry.

Written by hand because ``generate`` does none of these on a CPU: its cache concatenates the whole past every step,
its SDPA path copies each key and value head once per query head when the batch is padded, it decodes finished
rows to the end and admits no new ones, and ``multinomial`` draws one random number per vocabulary entry (49k at
the default model). transformers' continuous batching (``generate_batch``) admits new rows but draws without a
seed and was several times slower on a CPU (docs/experiments/2026-12-08-decode-stream.md). Its
static cache with ``torch.compile`` was slower still here (docs/BENCHMARKS.md, "Exploration speed").

The tokens come from the same model, the same logits and the same distribution as ``generate`` (temperature, then
top-p); each sampled token's log-probability under that distribution is recorded.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Iterator, Sequence
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
        if end > self.capacity:  # a row that joined the batch late decodes past the first capacity
            self._resize(max(end, 2 * self.capacity))
        self.key_buffer[:, :, self.length : end] = key_states
        self.value_buffer[:, :, self.length : end] = value_states
        self.length = end
        self.keys, self.values = self.key_buffer[:, :, :end], self.value_buffer[:, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def _resize(self, capacity: int) -> None:
        for name in ("key_buffer", "value_buffer"):
            old = getattr(self, name)
            new = old.new_empty((*old.shape[:2], capacity, old.shape[3]))
            new[:, :, : self.length] = old[:, :, : self.length]
            setattr(self, name, new)
        self.capacity = capacity

    def join(self, other: GrowingLayer, shifts: list[int], capacity: int) -> None:
        """``other``'s rows after these, each side's filled columns moved right by its shift (left when negative,
        dropping what falls off), the columns moved into left as zeros; both sides then end at the same column."""
        length = self.length + shifts[0]
        for name in ("key_buffer", "value_buffer"):
            mine, theirs = getattr(self, name), getattr(other, name)
            new = mine.new_zeros((len(mine) + len(theirs), mine.shape[1], capacity, mine.shape[3]))
            for rows, layer, shift in (
                (slice(0, len(mine)), self, shifts[0]),
                (slice(len(mine), None), other, shifts[1]),
            ):
                new[rows, :, max(0, shift) : length] = getattr(layer, name)[:, :, max(0, -shift) : layer.length]
            setattr(self, name, new)
        self.length, self.capacity = length, capacity
        self.keys, self.values = self.key_buffer[:, :, :length], self.value_buffer[:, :, :length]

    def batch_repeat_interleave(self, repeats: Any) -> None:
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
    """The rows decoding together: each one's output index, attention mask, next position, and the cache. Every
    row's last filled column is ``length - 1``: rows that joined later are left-padded to it."""

    def __init__(self, cache: Cache, mask: Any, positions: Any, rows: list[int], capacity: int):
        self.cache = cache
        self.length = mask.shape[1]
        self.mask = mask.new_zeros((len(rows), capacity))
        self.mask[:, : self.length] = mask
        self.next_position = positions[:, -1:] + 1
        self.rows = rows

    def step_inputs(self) -> dict[str, Any]:
        if self.length == self.mask.shape[1]:  # rows that joined later decode past the first capacity
            self.mask = torch.cat([self.mask, torch.zeros_like(self.mask)], dim=1)
        self.mask[:, self.length] = True
        self.length += 1
        inputs = {"attention_mask": self.mask[:, : self.length], "position_ids": self.next_position}
        self.next_position = self.next_position + 1
        return inputs

    def keep(self, keep: list[int]) -> None:
        """Drop every row but those at ``keep`` (positions in the current batch)."""
        index = torch.tensor(keep, device=self.mask.device, dtype=torch.long)
        self.cache.batch_select_indices(index)
        self.mask = self.mask[index]
        self.next_position = self.next_position[index]
        self.rows = [self.rows[k] for k in keep]

    def join(self, other: Batch, room: int) -> None:
        """``other``'s rows (just prefilled) after this batch's: both end at the same column, the leading columns
        that no row uses are dropped, and ``room`` columns are left free for what follows."""
        length = max(self.length, other.length)
        shifts = [length - self.length, length - other.length]
        used = torch.cat(
            [_shifted(b.mask[:, : b.length], s, length) for b, s in zip((self, other), shifts, strict=True)]
        )
        first = int(used.any(0).nonzero()[0])
        self.length = length - first
        self.mask = used.new_zeros((len(used), self.length + room))
        self.mask[:, : self.length] = used[:, first:]
        for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True):
            mine.join(theirs, [s - first for s in shifts], self.length + room)
        self.next_position = torch.cat([self.next_position, other.next_position])
        self.rows = self.rows + other.rows


def _shifted(mask: Any, shift: int, length: int) -> Any:
    """``mask`` moved ``shift`` columns right (the new ones False), ``length`` columns wide."""
    out = mask.new_zeros((len(mask), length))
    out[:, shift:] = mask
    return out


def prefill(
    model: Any, prompt_ids: Sequence[list[int]], counts: list[int], pad_id: int, rows: list[int], room: int
) -> tuple[Batch, Any]:
    """The prompts run once each, left-padded, their keys and values repeated for their ``counts`` answers: the
    batch of their rows (output indices ``rows``, ``room`` columns free for the answers) and each row's next-token
    logits."""
    device = next(model.parameters()).device
    width = max(len(ids) for ids in prompt_ids)
    input_ids = torch.tensor([[pad_id] * (width - len(ids)) + list(ids) for ids in prompt_ids], device=device)
    mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompt_ids], device=device).bool()
    positions = (mask.long().cumsum(-1) - 1).masked_fill(~mask, 0)  # as generate numbers left-padded rows
    layers = model.config.get_text_config().num_hidden_layers
    cache = Cache(layers=[GrowingLayer(width + room) for _ in range(layers)])
    out = model(
        input_ids=input_ids, attention_mask=mask, position_ids=positions, past_key_values=cache, logits_to_keep=1
    )
    repeats = torch.tensor(counts, device=device)
    cache.batch_repeat_interleave(repeats)
    rows_mask, rows_positions = mask.repeat_interleave(repeats, dim=0), positions.repeat_interleave(repeats, dim=0)
    batch = Batch(cache, rows_mask, rows_positions, rows, width + room)
    return batch, out.logits[:, -1].repeat_interleave(repeats, dim=0)


def decode(
    model: Any,
    prompt_ids: Sequence[list[int]],
    sampling: Sampling,
    stop_ids: Sequence[int],
    pad_id: int,
    seed: int,
    max_rows: int | None = None,
    progress: Callable[[int], object] | None = None,
    counts: Sequence[int] | None = None,
) -> list[Decoded]:
    """``sampling.n`` answers to each prompt (``counts[i]`` to prompt i when given), grouped by prompt, in order;
    reproducible under ``seed``.

    At most ``max_rows`` rows decode together (every row when None): the first prompts that fit are prefilled once
    each, left-padded, and decoded together; finished rows leave the batch once they are a quarter of it, and the
    prompts still waiting take their places when a quarter of the rows is free, so the batch stays full.
    ``progress`` is told how many answers each step finished."""
    if not prompt_ids:
        return []
    counts = [sampling.n] * len(prompt_ids) if counts is None else list(counts)
    budget = sampling.max_new_tokens
    first_row = [0, *itertools.accumulate(counts)]
    max_rows = first_row[-1] if max_rows is None else max_rows
    generator = torch.Generator(next(model.parameters()).device).manual_seed(seed)
    stop = set(stop_ids)
    answers = [Decoded([], None if sampling.temperature == 0 else []) for _ in range(first_row[-1])]
    finished = [False] * len(answers)
    waiting = collections.deque(range(len(prompt_ids)))  # prompts not started yet, in order

    def start(room: int) -> tuple[Batch, Any]:
        """The waiting prompts whose answers fit in ``room`` rows (the next one at least)."""
        chosen = [waiting.popleft()]
        while waiting and sum(counts[i] for i in chosen) + counts[waiting[0]] <= room:
            chosen.append(waiting.popleft())
        rows = [r for i in chosen for r in range(first_row[i], first_row[i + 1])]
        return prefill(model, [prompt_ids[i] for i in chosen], [counts[i] for i in chosen], pad_id, rows, budget)

    with grouped_attention_on(model), torch.inference_mode():
        batch, logits = start(max_rows)
        while True:
            chosen, chosen_logprobs = choose(logits, sampling, generator)
            chosen = chosen.tolist()
            values = [None] * len(chosen) if chosen_logprobs is None else chosen_logprobs.tolist()
            newly = 0
            for k, (row, token, value) in enumerate(zip(batch.rows, chosen, values, strict=True)):
                if finished[row]:  # still in the batch until a quarter of it is done
                    chosen[k] = pad_id
                    continue
                answers[row].token_ids.append(token)
                if value is not None:
                    answers[row].logprobs.append(value)
                finished[row] = token in stop or len(answers[row].token_ids) == budget
                newly += finished[row]
            alive = [k for k, row in enumerate(batch.rows) if not finished[row]]
            if progress is not None:
                progress(newly)
            if not alive and not waiting:
                break
            if (len(batch.rows) - len(alive)) * 4 >= len(batch.rows):
                batch.keep(alive)
                chosen = [chosen[k] for k in alive]
            if batch.rows:
                step_ids = torch.tensor(chosen, device=logits.device)[:, None]
                out = model(input_ids=step_ids, past_key_values=batch.cache, logits_to_keep=1, **batch.step_inputs())
                logits = out.logits[:, -1]
            free = max_rows - len(batch.rows)
            if not batch.rows:
                batch, logits = start(max_rows)
            elif waiting and counts[waiting[0]] <= free and free * 4 >= max_rows:
                joining, their_logits = start(free)
                batch.join(joining, budget)
                logits = torch.cat([logits, their_logits])
    return answers

"""The transformers generation engine: batched decoding (rollouts/decoding.py) on the in-memory policy.

It generates with the very model the update trains (same weights, same dtype), so its candidates are exactly
on-policy; each sampled token's log-probability is recorded (``Candidate.logprobs``; None for greedy answers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rollouts.decoding import Decoded, decode
from tao.core.console import Console
from tao.core.errors import ResourceError
from tao.core.model import Policy, chat_token_ids, stop_token_ids
from tao.core.types import Ask, Candidate, Prompt, Sampling


class TransformersEngine:
    """Generates with the policy's in-memory base, the named adapter attached for the call."""

    name = "transformers"

    def __init__(self, policy: Policy, batch_size: int, console: Console):
        self.policy = policy
        self.tokenizer = policy.tokenizer
        self.batch_size = batch_size  # sequences per generate call
        self.console = console
        self.stop_ids = stop_token_ids(policy.tokenizer, policy.base.path)
        self.pad_id = policy.tokenizer.pad_token_id

    def prompt_token_ids(self, prompt: Prompt) -> list[int]:
        return chat_token_ids(self.tokenizer, prompt)

    def release(self) -> None:
        """Nothing to give back: the engine's model is the policy the update trains."""

    def close(self) -> None:
        """Nothing to stop: the policy belongs to the run."""

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling, adapter: Path | None) -> list[Candidate]:
        return self.generate_many([Ask(tuple(prompts), sampling)], adapter)[0]

    def generate_many(self, asks: Sequence[Ask], adapter: Path | None) -> list[list[Candidate]]:
        """Asks that decode alike (temperature, top-p, answer budget) share one decode stream, seeded by the first
        of them."""
        import torch

        streams: dict[Sampling, list[int]] = {}
        for k, ask in enumerate(asks):
            streams.setdefault(replace(ask.sampling, n=1, seed=0), []).append(k)
        out: list[list[Candidate]] = [[] for _ in asks]
        with self.policy.attached(adapter) as model:
            try:
                for members in streams.values():
                    for k, candidates in zip(members, self._stream(model, [asks[k] for k in members]), strict=True):
                        out[k] = candidates
            except torch.OutOfMemoryError:
                raise ResourceError(
                    "out of memory while generating; lower rollout.batch_size or rollout.max_new_tokens"
                ) from None
        return out

    def _stream(self, model: Any, asks: list[Ask]) -> list[list[Candidate]]:
        """The asks' prompts decoded in one stream, similar lengths together (less padding; the order is a pure
        function of the asks), ``rollout.batch_size`` rows at a time."""
        items = [(k, p, self.prompt_token_ids(p)) for k, ask in enumerate(asks) for p in ask.prompts]
        order = sorted(range(len(items)), key=lambda i: (len(items[i][2]), items[i][1].id, items[i][0]))
        counts = [asks[items[i][0]].sampling.n for i in order]
        first = asks[0].sampling
        with self.console.bar(sum(counts), "generate", unit="answer") as bar:
            outputs = iter(
                decode(
                    model,
                    [items[i][2] for i in order],
                    first,
                    self.stop_ids,
                    self.pad_id,
                    seed=first.seed * 100_003,
                    max_rows=self.batch_size,
                    progress=bar.update,
                    counts=counts,
                )
            )
        answered = {i: [next(outputs) for _ in range(n)] for i, n in zip(order, counts, strict=True)}
        out: list[list[Candidate]] = [[] for _ in asks]
        for i, (k, prompt, _) in enumerate(items):
            out[k] += [self._candidate(prompt.id, j, d, asks[k].sampling) for j, d in enumerate(answered[i])]
        return out

    def _candidate(self, prompt_id: str, index: int, out: Decoded, sampling: Sampling) -> Candidate:
        ids = out.token_ids
        finished = bool(ids) and ids[-1] in self.stop_ids
        text = self.tokenizer.decode(ids[:-1] if finished else ids, skip_special_tokens=True)
        strategy = "greedy" if sampling.temperature == 0 else "sample"
        logprobs = None if out.logprobs is None else tuple(out.logprobs)
        return Candidate(prompt_id, index, text, tuple(ids), finished, strategy, logprobs)

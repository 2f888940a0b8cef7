"""The transformers generation engine: batched decoding (rollouts/decoding.py) on the in-memory policy.

It generates with the very model the update trains (same weights, same dtype), so its candidates are exactly
on-policy; each sampled token's log-probability is recorded (``Candidate.logprobs``; None for greedy answers).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rollouts.decoding import Decoded, decode
from tao.core.console import Console
from tao.core.errors import ResourceError
from tao.core.model import Policy, chat_token_ids, stop_token_ids
from tao.core.types import Candidate, Prompt, Sampling


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
        import torch

        with self.policy.attached(adapter) as model:
            try:
                return self._generate(model, prompts, sampling)
            except torch.OutOfMemoryError:
                raise ResourceError(
                    "out of memory while generating; lower rollout.batch_size or rollout.max_new_tokens"
                ) from None

    def _generate(self, model: Any, prompts: Sequence[Prompt], sampling: Sampling) -> list[Candidate]:
        encoded = [self.prompt_token_ids(p) for p in prompts]
        # Similar lengths together: less padding. The order is a pure function of the prompts.
        order = sorted(range(len(prompts)), key=lambda i: (len(encoded[i]), prompts[i].id))
        with self.console.bar(len(prompts) * sampling.n, "generate", unit="answer") as bar:
            outputs = decode(
                model,
                [encoded[i] for i in order],
                sampling,
                self.stop_ids,
                self.pad_id,
                seed=sampling.seed * 100_003,
                max_rows=self.batch_size,
                progress=bar.update,
            )
        results = {
            i: [self._candidate(prompts[i].id, j, out, sampling) for j, out in enumerate(rows)]
            for i, rows in zip(order, _chunks(outputs, sampling.n), strict=True)
        }
        return [c for i in range(len(prompts)) for c in results[i]]

    def _candidate(self, prompt_id: str, index: int, out: Decoded, sampling: Sampling) -> Candidate:
        ids = out.token_ids
        finished = bool(ids) and ids[-1] in self.stop_ids
        text = self.tokenizer.decode(ids[:-1] if finished else ids, skip_special_tokens=True)
        strategy = "greedy" if sampling.temperature == 0 else "sample"
        logprobs = None if out.logprobs is None else tuple(out.logprobs)
        return Candidate(prompt_id, index, text, tuple(ids), finished, strategy, logprobs)


def _chunks(items: list[Decoded], size: int) -> list[list[Decoded]]:
    return [items[k : k + size] for k in range(0, len(items), size)]

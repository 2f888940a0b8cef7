"""The transformers generation engine: batched, left-padded ``generate`` on the in-memory policy.

It generates with the very model the update trains (same weights, same dtype), so its candidates are
exactly on-policy. It reports no per-token log-probabilities (``Candidate.logprobs`` is None).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tao.core.console import Console
from tao.core.errors import ResourceError
from tao.core.model import Policy, chat_token_ids
from tao.core.types import Candidate, Prompt, Sampling


def stop_token_ids(tokenizer: Any, model_dir: Path) -> list[int]:
    """Tokens that end an answer: the tokenizer's eos and the eos ids of the model's (generation) config."""
    stop = {tokenizer.eos_token_id}
    for name in ("config.json", "generation_config.json"):
        try:
            eos = json.loads((model_dir / name).read_text()).get("eos_token_id")
        except (OSError, ValueError):
            continue
        stop.update([eos] if isinstance(eos, int) else list(eos or []))
    return sorted(stop)


class TransformersEngine:
    """Generates with the policy's in-memory base, the named adapter attached for the call."""

    name = "transformers"

    def __init__(self, policy: Policy, batch_size: int, console: Console):
        self.policy = policy
        self.tokenizer = policy.tokenizer
        self.batch_size = batch_size  # sequences per generate call
        self.console = console
        self.stop_ids = stop_token_ids(policy.tokenizer, policy.base.path)

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
        import torch

        per_call = max(1, self.batch_size // sampling.n)
        encoded = [self.prompt_token_ids(p) for p in prompts]
        # Similar lengths together: less padding. The order is a pure function of the prompts.
        order = sorted(range(len(prompts)), key=lambda i: (len(encoded[i]), prompts[i].id))
        results: dict[int, list[Candidate]] = {}
        config = self._generation_config(sampling)
        with self.console.bar(len(prompts), "generate", unit="prompt") as bar:
            for start in range(0, len(order), per_call):
                batch = order[start : start + per_call]
                torch.manual_seed(sampling.seed * 100_003 + start)
                outputs = self._generate_batch(model, [encoded[i] for i in batch], config)
                for k, i in enumerate(batch):
                    rows = outputs[k * sampling.n : (k + 1) * sampling.n]
                    results[i] = [self._candidate(prompts[i].id, j, ids, sampling) for j, ids in enumerate(rows)]
                bar.update(len(batch))
        return [c for i in range(len(prompts)) for c in results[i]]

    def _generation_config(self, sampling: Sampling) -> Any:
        from transformers import GenerationConfig

        greedy = sampling.temperature == 0
        return GenerationConfig(
            max_new_tokens=sampling.max_new_tokens,
            do_sample=not greedy,
            temperature=None if greedy else sampling.temperature,
            top_p=None if greedy else sampling.top_p,
            top_k=None,
            num_return_sequences=sampling.n,
            eos_token_id=self.stop_ids,
            pad_token_id=self.tokenizer.pad_token_id,
        )

    def _generate_batch(self, model: Any, prompt_ids: list[list[int]], config: Any) -> list[list[int]]:
        import torch

        width = max(len(ids) for ids in prompt_ids)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in prompt_ids])
        attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompt_ids])
        device = next(model.parameters()).device
        with torch.inference_mode():
            out = model.generate(
                input_ids=input_ids.to(device), attention_mask=attention.to(device), generation_config=config
            )
        return [self._trim(row[width:].tolist()) for row in out]

    def _trim(self, ids: list[int]) -> list[int]:
        """Cut after the first stop token (kept: it marks a finished answer); drops trailing padding."""
        for pos, token in enumerate(ids):
            if token in self.stop_ids:
                return ids[: pos + 1]
        return ids

    def _candidate(self, prompt_id: str, index: int, ids: list[int], sampling: Sampling) -> Candidate:
        finished = bool(ids) and ids[-1] in self.stop_ids
        text = self.tokenizer.decode(ids[:-1] if finished else ids, skip_special_tokens=True)
        strategy = "greedy" if sampling.temperature == 0 else "sample"
        return Candidate(prompt_id, index, text, tuple(ids), finished, strategy)

"""The generation contract: what every engine (transformers, vLLM, a vLLM server) takes and returns."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from tao.core.types import Ask, Candidate, Prompt, Sampling


class Engine(Protocol):
    """An engine that answers prompts with the chat template of the model it serves.

    One engine serves a whole ``tao run``: the base model, with the adapter named in each call.
    """

    name: str  # "transformers" or "vllm", as recorded in the round's figures
    tokenizer: Any  # the model's tokenizer (strategies re-tokenize the answers they extract)

    def prompt_token_ids(self, prompt: Prompt) -> list[int]:
        """The exact tokens the model sees for ``prompt`` (chat template, generation prompt added)."""
        ...

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling, adapter: Path | None) -> list[Candidate]:
        """``sampling.n`` candidates per prompt from the base with ``adapter`` (a LoRA adapter directory; None:
        the plain base), grouped by prompt in input order, reproducible under a seed."""
        ...

    def generate_many(self, asks: Sequence[Ask], adapter: Path | None) -> list[list[Candidate]]:
        """Each ask's candidates, as ``generate`` gives them, from one pass over all the asks: the engine keeps its
        batch full across them instead of draining it at the end of each."""
        ...

    def close(self) -> None:
        """Stop the engine (its processes, its memory); the run is over."""
        ...

    def release(self) -> None:
        """Give back accelerator memory the engine holds between calls (the update needs it); the next
        ``generate`` takes it again."""
        ...

"""The generation contract: what every engine (transformers, vLLM) takes and returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tao.prompts import Prompt


@dataclass(frozen=True)
class Sampling:
    """How to decode. ``temperature == 0`` means greedy (then ``n`` must be 1)."""

    n: int  # candidates per prompt
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int

    def __post_init__(self) -> None:
        if self.temperature == 0 and self.n != 1:
            raise ValueError("greedy decoding gives one candidate per prompt")


@dataclass(frozen=True)
class Candidate:
    """One generated answer to one prompt."""

    prompt_id: str
    index: int  # position in its prompt's group, 0..n-1
    text: str  # decoded answer, special tokens removed
    token_ids: tuple[int, ...]  # the completion as generated; ends with an end-of-turn token when finished
    finished: bool  # the model ended its answer within max_new_tokens
    strategy: str  # what produced it: "greedy", "sample", or an exploration strategy (rollouts/strategies.py)
    # Log-probability of each token of ``token_ids`` under the distribution it was sampled from (temperature
    # and top-p applied), as the engine reported it; None when the engine does not report them.
    logprobs: tuple[float, ...] | None = None
    # What produced it beyond the plain prompt (the temperature, a guide, the draft it revises, ...); the update
    # trains it as the answer to the plain prompt all the same.
    context: str = ""

    def to_row(self) -> dict:
        return {
            "prompt_id": self.prompt_id,
            "index": self.index,
            "strategy": self.strategy,
            "finished": self.finished,
            "text": self.text,
            "token_ids": list(self.token_ids),
            "logprobs": None if self.logprobs is None else [round(x, 5) for x in self.logprobs],
            "context": self.context,
        }

    @classmethod
    def from_row(cls, row: dict) -> Candidate:
        return cls(
            row["prompt_id"],
            row["index"],
            row["text"],
            tuple(row["token_ids"]),
            row["finished"],
            row["strategy"],
            None if row.get("logprobs") is None else tuple(row["logprobs"]),
            row.get("context", ""),
        )


class Generator(Protocol):
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

    def close(self) -> None:
        """Stop the engine (its processes, its memory); the run is over."""
        ...

    def release(self) -> None:
        """Give back accelerator memory the engine holds between calls (the update needs it); the next
        ``generate`` takes it again."""
        ...

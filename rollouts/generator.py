"""The generation contract: what any engine (transformers today, vLLM next) takes and returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

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
    strategy: str  # what produced it: "sample" or "greedy"

    def to_row(self) -> dict:
        return {
            "prompt_id": self.prompt_id,
            "index": self.index,
            "strategy": self.strategy,
            "finished": self.finished,
            "text": self.text,
            "token_ids": list(self.token_ids),
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
        )


class Generator(Protocol):
    """An engine that answers prompts with the chat template of the model it serves."""

    def prompt_token_ids(self, prompt: Prompt) -> list[int]:
        """The exact tokens the model sees for ``prompt`` (chat template, generation prompt added)."""
        ...

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[Candidate]:
        """``sampling.n`` candidates per prompt, grouped by prompt in input order, reproducible under a seed."""
        ...

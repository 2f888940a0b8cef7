"""The contracts between stages: a prompt, a decoding request, a generated candidate, its score.

Frozen dataclasses, one meaning per field; rows on disk are their ``to_row`` forms.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class Prompt:
    """One prompt as the application sends it: the conversation up to the user's last turn."""

    id: str
    messages: tuple[Message, ...]
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def text(self) -> str:
        """The user's last turn."""
        return self.messages[-1].content

    def chat(self) -> list[dict[str, str]]:
        """The messages as chat-template dicts."""
        return [{"role": m.role, "content": m.content} for m in self.messages]

    def to_row(self) -> dict[str, Any]:
        return {"id": self.id, "messages": self.chat(), "metadata": self.metadata}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Prompt:
        return cls(row["id"], tuple(Message(m["role"], m["content"]) for m in row["messages"]), row["metadata"])

    @property
    def content_key(self) -> str:
        return content_key(self.messages)


def content_key(messages: tuple[Message, ...]) -> str:
    """A hash of the conversation alone (not the id or metadata): equal prompts have equal keys."""
    blob = json.dumps([[m.role, m.content] for m in messages], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


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


@dataclass(frozen=True)
class Score:
    total: float | None  # weighted sum of the parts with an opinion; None if none has one
    parts: dict[str, float | None]  # each scorer's own score, by spec

    def to_row(self) -> dict:
        return {"score": self.total, "scores": self.parts}


@dataclass(frozen=True)
class Scored:
    """An explored candidate with its score: one line of a round's ``candidates.jsonl``."""

    candidate: Candidate
    score: Score

    def to_row(self) -> dict:
        return {**self.candidate.to_row(), **self.score.to_row()}

    @classmethod
    def from_row(cls, row: dict) -> Scored:
        return cls(Candidate.from_row(row), Score(row["score"], row["scores"]))


@dataclass(frozen=True)
class Answer:
    """A greedy answer to an evaluation prompt, scored: one line of ``eval.jsonl`` and of ``tao compare``'s items."""

    prompt_id: str
    text: str
    finished: bool  # the model ended it within the answer budget
    score: float | None  # the reward's total; None when no scorer had an opinion
    scores: dict[str, float | None]  # each scorer's own score, by spec
    reward: str  # what scored it (RewardSet.identity): totals of equal rewards are comparable

    def to_row(self) -> dict:
        return {
            "prompt_id": self.prompt_id,
            "score": self.score,
            "scores": self.scores,
            "reward": self.reward,
            "finished": self.finished,
            "text": self.text,
        }

    @classmethod
    def from_row(cls, row: dict) -> Answer:
        return cls(row["prompt_id"], row["text"], row["finished"], row["score"], row["scores"], row["reward"])

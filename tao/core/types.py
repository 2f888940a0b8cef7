"""The contracts between stages: a prompt, a decoding request, a generated candidate, its score.

Frozen dataclasses, one meaning per field; rows on disk are their ``to_row`` forms.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ToolCall:
    """A function call an assistant turn made, as OpenAI's logs record it."""

    id: str  # "" when the log gave none
    name: str
    arguments: str  # the call's arguments: JSON text, as the model wrote them

    def to_chat(self) -> dict[str, Any]:
        """In the form chat templates read: arguments as an object where they parse as one."""
        try:
            arguments: Any = json.loads(self.arguments)
        except ValueError:
            arguments = self.arguments
        call = {"type": "function", "function": {"name": self.name, "arguments": arguments}}
        return {"id": self.id, **call} if self.id else call


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant turn's function calls
    tool_call_id: str = ""  # a tool turn: the call it answers

    def to_chat(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [c.to_chat() for c in self.tool_calls]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out

    def to_row(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in self.tool_calls]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Message:
        calls = tuple(ToolCall(c["id"], c["name"], c["arguments"]) for c in row.get("tool_calls", ()))
        return cls(row["role"], row["content"], calls, row.get("tool_call_id", ""))


@dataclass(frozen=True)
class Prompt:
    """One prompt as the application sends it: the conversation up to the turn the model answers next."""

    id: str
    messages: tuple[Message, ...]
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    tools: tuple[str, ...] = ()  # the tool definitions the request offered, each as canonical JSON text
    # Content parts of the record that were images, audio or files, left out (the model reads text); not kept on disk.
    parts_left_out: int = field(default=0, compare=False)

    @property
    def text(self) -> str:
        """The user's last turn."""
        return next((m.content for m in reversed(self.messages) if m.role == "user"), self.messages[-1].content)

    def chat(self) -> list[dict[str, Any]]:
        """The messages as chat-template dicts."""
        return [m.to_chat() for m in self.messages]

    def tool_list(self) -> list[dict[str, Any]] | None:
        """The tool definitions as chat templates take them (``tools=``); None without any."""
        return [json.loads(t) for t in self.tools] or None

    def to_row(self) -> dict[str, Any]:
        row = {"id": self.id, "messages": [m.to_row() for m in self.messages], "metadata": self.metadata}
        return {**row, "tools": list(self.tools)} if self.tools else row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Prompt:
        messages = tuple(Message.from_row(m) for m in row["messages"])
        return cls(row["id"], messages, row["metadata"], tuple(row.get("tools", ())))

    @property
    def content_key(self) -> str:
        return content_key(self.messages, self.tools)


def content_key(messages: tuple[Message, ...], tools: tuple[str, ...] = ()) -> str:
    """A hash of the conversation and its tools alone (not the id or metadata): equal prompts have equal keys."""
    turns: list[Any] = [
        [m.role, m.content] if not (m.tool_calls or m.tool_call_id) else [m.role, m.content, m.to_row()]
        for m in messages
    ]
    blob = json.dumps(turns + [list(tools)] if tools else turns, ensure_ascii=False)
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
class Ask:
    """One request to an engine: ``sampling.n`` candidates for each of ``prompts``."""

    prompts: tuple[Prompt, ...]
    sampling: Sampling


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

"""Prompts from an application's logs: one record each (JSONL, CSV, Parquet, a saved dataset: tao/core/records.py),
validated, deduplicated.

Accepted records (any other top-level field is kept as metadata and reaches the scorers):

- ``{"prompt": "..."}``
- ``{"messages": [{"role": ..., "content": ...}, ...]}`` (the last turn is the user's)
- an OpenAI-style chat-completions request log line, with the messages under ``request`` or ``body``

An ``id`` (or ``custom_id``) names the prompt; without one the id is derived from the content. Logs that keep the
prompt under other names are read through a field mapping (``data.fields``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tao.core.errors import InputError
from tao.core.records import parse_json, records
from tao.core.types import Message, Prompt, content_key

ROLES = ("system", "developer", "user", "assistant", "tool")
# Keyword names a scorer function already receives (trl's reward-function signature); metadata may not use them.
RESERVED = frozenset(
    {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric", "environments"}
)
_PROMPT_KEYS = ("prompt", "messages", "request", "body")


@dataclass(frozen=True)
class PromptFile:
    """A validated prompts file: unique prompts in file order, with what was dropped."""

    path: Path
    sha256: str
    prompts: tuple[Prompt, ...]
    lines: int  # non-blank lines read
    duplicates: int  # exact duplicates dropped (same conversation as an earlier line)


def load_prompts(path: str | Path, fields: dict[str, str] | None = None) -> PromptFile:
    """Read and validate the whole source (any form :mod:`tao.core.records` reads); any bad record raises
    InputError naming it (nothing is written). ``fields``: see :func:`parse_record`."""
    path = Path(path)
    digest = hashlib.sha256()
    prompts: list[Prompt] = []
    seen_content: set[str] = set()
    seen_ids: dict[str, int] = {}
    lines = duplicates = 0
    for number, obj in records(path, digest):
        lines += 1
        prompt = parse_record(obj, path, number, fields)
        key = prompt.content_key
        if key in seen_content:
            duplicates += 1
            continue
        if prompt.id in seen_ids:
            raise InputError(
                f"duplicate id {prompt.id!r} (first on line {seen_ids[prompt.id]}) with a different prompt",
                file=path,
                line=number,
                field="id",
            )
        seen_content.add(key)
        seen_ids[prompt.id] = number
        prompts.append(prompt)
    if not prompts:
        raise InputError("no prompts in file", file=path)
    return PromptFile(path, digest.hexdigest(), tuple(prompts), lines, duplicates)


def mapped(obj: Any, fields: dict[str, str]) -> Any:
    """``obj`` with each of tao's names (prompt, messages, id) taken from where the logs keep it: a field name or a
    dotted path into nested objects (``request.body.messages``). A path that is not there is left out."""
    if not fields or not isinstance(obj, dict):
        return obj
    out = dict(obj)
    for name, where in fields.items():
        value: Any = obj
        for part in where.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            out.pop(where.split(".")[0], None)
            out[name] = value
    return out


def parse_record(obj: Any, path: Path, number: int, fields: dict[str, str] | None = None) -> Prompt:
    """One record of a prompts source as a Prompt; a bad one raises InputError naming its line and field.
    ``fields`` maps tao's names to the logs' own first (:func:`mapped`)."""

    def bad(problem: str, name: str | None = None) -> InputError:
        return InputError(problem, file=path, line=number, field=name)

    obj = mapped(obj, fields or {})
    if not isinstance(obj, dict):
        raise bad(f"expected a JSON object, got {type(obj).__name__}")
    present = [k for k in _PROMPT_KEYS if k in obj]
    if not present:
        raise bad('no prompt: expected "prompt", "messages", or a request log with "request"/"body"')
    if len(present) > 1:
        raise bad(f"ambiguous line: has both {present[0]!r} and {present[1]!r}")
    key = present[0]
    if key == "prompt":
        if not isinstance(obj["prompt"], str):
            raise bad(f"expected a string, got {type(obj['prompt']).__name__}", "prompt")
        messages, last = (Message("user", obj["prompt"]),), "prompt"
    else:
        name = "messages" if key == "messages" else f"{key}.messages"
        if key != "messages" and (not isinstance(obj[key], dict) or "messages" not in obj[key]):
            raise bad("expected an object with a 'messages' list", key)
        messages = _messages(obj["messages"] if key == "messages" else obj[key]["messages"], name, bad)
        last = f"{name}[-1].content"
    if not messages[-1].content.strip():
        raise bad("empty prompt", last)
    raw_id = obj.get("id", obj.get("custom_id"))
    if raw_id is None:
        prompt_id = "p-" + content_key(messages)[:12]
    elif isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool) and str(raw_id).strip():
        prompt_id = str(raw_id)
    else:
        raise bad(f"expected a non-empty string or integer, got {raw_id!r}", "id")
    metadata = {k: v for k, v in obj.items() if k not in (*_PROMPT_KEYS, "id", "custom_id")}
    clash = sorted(RESERVED & metadata.keys())
    if clash:
        raise bad(f"field name {clash[0]!r} is reserved for the scorer call; rename it", clash[0])
    return Prompt(prompt_id, messages, metadata)


def parse_line(raw: str, path: Path, number: int) -> Prompt:
    """One JSON text (an API request's body, a labeled line) as a Prompt."""
    return parse_record(parse_json(raw, path, number), path, number)


def _messages(value: Any, name: str, bad: Any) -> tuple[Message, ...]:
    if not isinstance(value, list) or not value:
        raise bad("expected a non-empty list of messages", name)
    messages = []
    for i, item in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(item, dict):
            raise bad(f"expected an object, got {type(item).__name__}", where)
        role = item.get("role")
        if item.get("tool_calls") or item.get("function_call"):
            raise bad("tool calls are not supported; leave conversations with tool calls out of the file", where)
        if role not in ROLES:
            raise bad(f"role must be one of {', '.join(ROLES)}; got {role!r}", f"{where}.role")
        messages.append(Message(role, _content(item.get("content"), f"{where}.content", bad)))
    if messages[-1].role != "user":
        raise bad(f"the last message must be the user's, got role {messages[-1].role!r}", f"{name}[-1].role")
    return tuple(messages)


def _content(value: Any, name: str, bad: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI content parts: only text parts are supported
        texts = []
        for j, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise bad(f"only text content parts are supported, got {kind!r}", f"{name}[{j}]")
            texts.append(part["text"])
        return "\n".join(texts)
    raise bad(f"expected a string, got {type(value).__name__}", name)

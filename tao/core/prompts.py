"""Prompts from an application's logs: one record each (JSONL, CSV, Parquet, a saved dataset: tao/core/records.py),
validated, deduplicated.

Accepted records (any other top-level field is kept as metadata and reaches the scorers):

- ``{"prompt": "..."}``
- ``{"messages": [{"role": ..., "content": ...}, ...]}`` (the last turn is the user's, or a tool's result)
- an OpenAI-style chat-completions request log line, with the messages under ``request`` or ``body``

An agent's turns are kept: an assistant turn's ``tool_calls`` (or older ``function_call``), a tool turn's
``tool_call_id``, and the request's ``tools`` (or older ``functions``), which the model's chat template renders.

An ``id`` (or ``custom_id``) names the prompt; without one the id is derived from the content. Logs that keep the
prompt under other names are read through a field mapping (``data.fields``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tao.core.errors import InputError
from tao.core.records import parse_json, records
from tao.core.types import Message, Prompt, ToolCall, content_key

ROLES = ("system", "developer", "user", "assistant", "tool")
# Keyword names a scorer function already receives (trl's reward-function signature); metadata may not use them.
RESERVED = frozenset(
    {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric", "environments"}
)
_PROMPT_KEYS = ("prompt", "messages", "request", "body")
MEDIA_PARTS = frozenset({"image_url", "image", "input_image", "input_audio", "audio", "file", "video_url", "video"})


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
        messages, last, left_out = (Message("user", obj["prompt"]),), "prompt", 0
        tools = _tools(obj, "", bad)
    else:
        name = "messages" if key == "messages" else f"{key}.messages"
        if key != "messages" and (not isinstance(obj[key], dict) or "messages" not in obj[key]):
            raise bad("expected an object with a 'messages' list", key)
        messages, left_out = _messages(obj["messages"] if key == "messages" else obj[key]["messages"], name, bad)
        tools = _tools(obj if key == "messages" else obj[key], "" if key == "messages" else f"{key}.", bad)
        last = f"{name}[-1].content"
    if not messages[-1].content.strip():
        raise bad("empty prompt", last)
    raw_id = obj.get("id", obj.get("custom_id"))
    if raw_id is None:
        prompt_id = "p-" + content_key(messages, tools)[:12]
    elif isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool) and str(raw_id).strip():
        prompt_id = str(raw_id)
    else:
        raise bad(f"expected a non-empty string or integer, got {raw_id!r}", "id")
    metadata = {k: v for k, v in obj.items() if k not in (*_PROMPT_KEYS, "id", "custom_id", "tools", "functions")}
    clash = sorted(RESERVED & metadata.keys())
    if clash:
        raise bad(f"field name {clash[0]!r} is reserved for the scorer call; rename it", clash[0])
    return Prompt(prompt_id, messages, metadata, tools, left_out)


def parse_line(raw: str, path: Path, number: int) -> Prompt:
    """One JSON text (an API request's body, a labeled line) as a Prompt."""
    return parse_record(parse_json(raw, path, number), path, number)


def _messages(value: Any, name: str, bad: Any) -> tuple[tuple[Message, ...], int]:
    """The turns, and how many content parts were left out (images, audio, files)."""
    if not isinstance(value, list) or not value:
        raise bad("expected a non-empty list of messages", name)
    messages, left_out = [], 0
    for i, item in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(item, dict):
            raise bad(f"expected an object, got {type(item).__name__}", where)
        role = item.get("role")
        if role not in ROLES:
            raise bad(f"role must be one of {', '.join(ROLES)}; got {role!r}", f"{where}.role")
        calls = _tool_calls(item, where, bad) if role == "assistant" else ()
        content = item.get("content")
        if calls and content is None:  # an assistant turn that only calls tools
            content = ""
        call_id = item.get("tool_call_id", "") if role == "tool" else ""
        if not isinstance(call_id, str):
            raise bad(f"expected a string, got {type(call_id).__name__}", f"{where}.tool_call_id")
        text, media = _content(content, f"{where}.content", bad)
        left_out += media
        messages.append(Message(role, text, calls, call_id))
    if messages[-1].role not in ("user", "tool"):
        raise bad(
            f"the last message must be the user's (or a tool's result), got role {messages[-1].role!r}",
            f"{name}[-1].role",
        )
    return tuple(messages), left_out


def _tool_calls(item: dict, where: str, bad: Any) -> tuple[ToolCall, ...]:
    """An assistant turn's ``tool_calls`` (OpenAI's form), or its older single ``function_call``."""
    if item.get("function_call") is not None:
        raw, name = [{"function": item["function_call"]}], f"{where}.function_call"
    else:
        raw, name = item.get("tool_calls") or [], f"{where}.tool_calls"
    if not isinstance(raw, list):
        raise bad(f"expected a list, got {type(raw).__name__}", name)
    calls = []
    for j, call in enumerate(raw):
        at = f"{name}[{j}]" if "tool_calls" in name else name
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise bad("expected a call with a function name", at)
        arguments = function.get("arguments", "{}")
        if not isinstance(arguments, str):  # some logs keep the arguments as an object
            arguments = json.dumps(arguments, ensure_ascii=False, sort_keys=True)
        call_id = call.get("id") or ""
        if not isinstance(call_id, str):
            raise bad(f"expected a string, got {type(call_id).__name__}", f"{at}.id")
        calls.append(ToolCall(call_id, function["name"], arguments))
    return tuple(calls)


def _tools(obj: dict, name: str, bad: Any) -> tuple[str, ...]:
    """The request's tool definitions (``tools``, or the older ``functions``), as canonical JSON texts."""
    key = "tools" if obj.get("tools") is not None else "functions" if obj.get("functions") is not None else None
    if key is None:
        return ()
    raw = obj[key]
    if not isinstance(raw, list):
        raise bad(f"expected a list of tool definitions, got {type(raw).__name__}", f"{name}{key}")
    for j, tool in enumerate(raw):
        if not isinstance(tool, dict):
            raise bad(f"expected an object, got {type(tool).__name__}", f"{name}{key}[{j}]")
    if key == "functions":
        raw = [{"type": "function", "function": f} for f in raw]
    return tuple(json.dumps(t, ensure_ascii=False, sort_keys=True) for t in raw)


def _content(value: Any, name: str, bad: Any) -> tuple[str, int]:
    """A turn's text, and how many of its parts were images, audio or files (left out: the model reads text)."""
    if isinstance(value, str):
        return value, 0
    if isinstance(value, list):  # OpenAI content parts
        texts, left_out = [], 0
        for j, part in enumerate(value):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            if kind in MEDIA_PARTS:
                left_out += 1
            elif kind in ("text", "input_text") and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                raise bad(f"expected a text, image, audio or file part, got {kind!r}", f"{name}[{j}]")
        return "\n".join(texts), left_out
    raise bad(f"expected a string, got {type(value).__name__}", name)

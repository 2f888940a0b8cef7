"""``tao serve`` and ``tao chat``: talk to a version.

``tao serve`` gives an OpenAI-compatible endpoint. Where vLLM runs (a CUDA GPU with vLLM installed) it starts
vLLM's own server with the version's adapter (``vllm serve BASE --enable-lora --lora-modules NAME=ADAPTER``), which
is what production should use. Elsewhere it starts a small built-in server on transformers, for local trials:
``POST /v1/chat/completions`` (``"stream": true`` answered as server-sent events) and ``GET /v1/models``. Each client
has its own thread, so an idle or slow client blocks nobody (requests queue for the one model), an idle connection is
closed after ``IDLE_SECONDS``, a body over ``MAX_BODY`` bytes and a field out of range get a 4xx in OpenAI's error
shape. Both bind to 127.0.0.1 unless told otherwise. ``tao chat`` is a terminal conversation with the same
generation.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tao.core.config_file import load_config, replace
from tao.core.console import Console
from tao.core.errors import InputError
from tao.core.prompts import parse_record
from tao.core.records import parse_json
from tao.core.types import Message, Prompt, Sampling
from tao.run.registry import Version


@dataclass
class Chatbot:
    """A version loaded for answering: the base model with the version's adapter, on transformers."""

    version: Version
    engine: Any
    max_new_tokens: int
    lock: threading.Lock

    def answer(self, messages: tuple[Message, ...], max_tokens: int | None, temperature: float) -> tuple[str, bool]:
        """The reply and whether the model ended it (False: cut at the token budget)."""
        sampling = Sampling(1, temperature, 1.0, max_tokens or self.max_new_tokens, seed=int(time.time()))
        with self.lock:
            [candidate] = self.engine.generate([Prompt("request", messages)], sampling, self.version.adapter)
        return candidate.text, candidate.finished


def load(version: Version, console: Console) -> Chatbot:
    from rollouts.transformers_engine import TransformersEngine
    from tao.core.model import Policy, resolve_base

    if version.kind == "reward-model":
        raise InputError(f"{version.name} is a reward model: it scores answers, it does not write them")
    if not version.has_weights:
        raise InputError(f"{version.name} has no weights (collected by `tao models gc`)")
    saved = version.manifest.get("config", {})
    model = {**saved.get("model", {}), "name": version.manifest["base_model"]["path"]}
    config = replace(load_config(None, []), model=model, lora=saved.get("lora", {}))
    base = resolve_base(config.model, console)
    if not base.pinned_by(version.manifest["base_model"]["sha256"]):
        raise InputError(f"the base model changed since {version.name} was trained", file=base.path)
    policy = Policy(base, config.model, config.lora)
    max_new = saved.get("rollout", {}).get("max_new_tokens", config.rollout.max_new_tokens)
    return Chatbot(version, TransformersEngine(policy, 1, console), max_new, threading.Lock())


def vllm_command(version: Version, host: str, port: int) -> list[str]:
    """vLLM's own OpenAI server for the version: the base model with the adapter under the version's name."""
    rank = version.manifest.get("adapter_shape", {}).get("r", 16)
    return [
        *("vllm", "serve", version.manifest["base_model"]["path"], "--host", host, "--port", str(port)),
        *("--enable-lora", "--max-lora-rank", str(rank), "--lora-modules", f"{model_id(version)}={version.adapter}"),
    ]


def model_id(version: Version) -> str:
    return version.name.replace("/", "-")


IDLE_SECONDS = 30  # a connection that sends nothing for this long is closed
MAX_BODY = 1 << 20  # bytes of a request body at most
MAX_TOKENS = 4096  # a request's max_tokens at most


class Refused(Exception):
    """A request the server answers with an HTTP error: its status, message and the field at fault."""

    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


def read_request(headers: Any, body: Any) -> tuple[tuple[Message, ...], int | None, float, bool]:
    """A chat-completion request's messages, max_tokens, temperature and stream flag, or Refused."""
    try:
        length = int(headers.get("Content-Length", ""))
    except ValueError:
        raise Refused(411, "a Content-Length header is required") from None
    if length > MAX_BODY:
        raise Refused(413, f"the request body is over {MAX_BODY} bytes")
    try:
        request = parse_json(body.read(length).decode("utf-8"), Path("request"))
    except (InputError, UnicodeDecodeError) as exc:
        raise Refused(400, f"the body is not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise Refused(400, "the body must be a JSON object")
    try:
        messages = parse_record({"messages": request.get("messages")}, Path("request"), 1).messages
    except InputError as exc:
        raise Refused(400, exc.problem, exc.field) from None
    temperature = request.get("temperature", 0.0)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        raise Refused(400, "temperature must be a number from 0 to 2", "temperature")
    max_tokens = request.get("max_tokens", request.get("max_completion_tokens"))
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_TOKENS
    ):
        raise Refused(400, f"max_tokens must be a whole number from 1 to {MAX_TOKENS}", "max_tokens")
    stream = request.get("stream", False)
    if not isinstance(stream, bool):
        raise Refused(400, "stream must be true or false", "stream")
    return messages, max_tokens, float(temperature), stream


def make_server(bot: Chatbot, host: str, port: int) -> ThreadingHTTPServer:
    """The built-in OpenAI-compatible server (not started)."""

    class Handler(BaseHTTPRequestHandler):
        timeout = IDLE_SECONDS  # socket timeout: an idle client is dropped, never waited on forever

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.rstrip("/") != "/v1/models":
                return self._send(404, _error(f"no route {self.path}"))
            self._send(200, {"object": "list", "data": [{"id": model_id(bot.version), "object": "model"}]})

        def do_POST(self) -> None:  # noqa: N802
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._send(404, _error(f"no route {self.path}"))
            try:
                messages, max_tokens, temperature, stream = read_request(self.headers, self.rfile)
            except Refused as refused:
                return self._send(refused.status, _error(refused.message, refused.param))
            try:
                text, finished = bot.answer(messages, max_tokens, temperature)
            except Exception as exc:  # the model failed on this request: tell the client, keep serving
                return self._send(500, _error(f"generation failed: {type(exc).__name__}", kind="server_error"))
            if stream:
                return self._stream(text, finished)
            self._send(200, _completion(model_id(bot.version), text, finished))

        def _send(self, code: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, text: str, finished: bool) -> None:
            """The answer as OpenAI's chat.completion.chunk events: the role, the text in pieces, the finish."""
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            base = {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model_id(bot.version),
            }
            deltas = [{"role": "assistant", "content": ""}] + [{"content": piece} for piece in _pieces(text)]
            for delta in deltas:
                self._event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
            end = {"index": 0, "delta": {}, "finish_reason": "stop" if finished else "length"}
            self._event({**base, "choices": [end]})
            self.wfile.write(b"data: [DONE]\n\n")

        def _event(self, payload: dict) -> None:
            self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
            self.wfile.flush()

        def log_message(self, format: str, *args: Any) -> None:  # requests carry company data: no access log
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def _pieces(text: str) -> list[str]:
    """The answer in word-sized pieces, spaces kept, so that joining them gives it back."""
    return re.findall(r"\s*\S+|\s+$", text) or [text]


def chat(bot: Chatbot, console: Console) -> None:
    """A terminal conversation: one line per turn, greedy answers; an empty line or Ctrl-D ends it."""
    history: list[Message] = []
    console.result(f"chatting with {bot.version.name} (greedy, {bot.max_new_tokens} tokens); empty line to end")
    for line in sys.stdin:
        if not line.strip():
            break
        history.append(Message("user", line.rstrip("\n")))
        text, _ = bot.answer(tuple(history), None, 0.0)
        history.append(Message("assistant", text))
        console.result(text)


def _completion(model: str, text: str, finished: bool) -> dict:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop" if finished else "length",
            }
        ],
    }


def _error(message: str, param: str | None = None, kind: str = "invalid_request_error") -> dict:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}

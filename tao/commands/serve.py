"""``tao serve`` and ``tao chat``: talk to a version.

``tao serve`` gives an OpenAI-compatible endpoint. Where vLLM runs (a CUDA GPU with vLLM installed) it starts
vLLM's own server with the version's adapter (``vllm serve BASE --enable-lora --lora-modules NAME=ADAPTER``), which
is what production should use. Elsewhere it starts a small built-in server on transformers, for local trials:
``POST /v1/chat/completions`` and ``GET /v1/models``, one request at a time. Both bind to 127.0.0.1 unless told
otherwise. ``tao chat`` is a terminal conversation with the same generation.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from tao.core.config import load_config, replace
from tao.core.console import Console
from tao.core.errors import InputError
from tao.core.prompts import parse_line
from tao.core.types import Message, Prompt, Sampling
from tao.run.registry import Version


@dataclass
class Chatbot:
    """A version loaded for answering: the base model with the version's adapter, on transformers."""

    version: Version
    generator: Any
    max_new_tokens: int
    lock: threading.Lock

    def answer(self, messages: tuple[Message, ...], max_tokens: int | None, temperature: float) -> tuple[str, bool]:
        """The reply and whether the model ended it (False: cut at the token budget)."""
        sampling = Sampling(1, temperature, 1.0, max_tokens or self.max_new_tokens, seed=int(time.time()))
        with self.lock:
            [candidate] = self.generator.generate([Prompt("request", messages)], sampling, self.version.adapter)
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


def make_server(bot: Chatbot, host: str, port: int) -> HTTPServer:
    """The built-in OpenAI-compatible server (not started)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.rstrip("/") != "/v1/models":
                return self._send(404, _error(f"no route {self.path}"))
            self._send(200, {"object": "list", "data": [{"id": model_id(bot.version), "object": "model"}]})

        def do_POST(self) -> None:  # noqa: N802
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._send(404, _error(f"no route {self.path}"))
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                messages = parse_line(json.dumps({"messages": body.get("messages")}), Path("request"), 1).messages
                temperature = float(body.get("temperature", 0.0))
                max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
            except (InputError, ValueError, TypeError, AttributeError) as exc:
                return self._send(400, _error(str(exc)))
            text, finished = bot.answer(messages, int(max_tokens) if max_tokens else None, temperature)
            self._send(200, _completion(model_id(bot.version), text, finished))

        def _send(self, code: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # requests carry company data: no access log
            return

    return HTTPServer((host, port), Handler)


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


def _error(message: str) -> dict:
    return {"error": {"message": message, "type": "invalid_request_error"}}

"""The vLLM server engine: candidates from a ``vllm serve`` you started (other GPUs, another machine), over HTTP.

The server runs the base model with runtime LoRA loading; this engine only speaks its OpenAI-compatible API with
the standard library. Each adapter directory is loaded once (``POST /v1/load_lora_adapter``, by its absolute
path: the server must see the same filesystem) under a name derived from the directory, and then named as the
``model`` of each request. Prompts go as token ids (the same chat template as the other engines), one request
per prompt with a per-prompt seed, several requests in flight; answers come back as token ids and per-token
log-probabilities, so candidates are built as the offline vLLM engine builds them.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rollouts.vllm_engine import request_seed
from tao.core.config import Config
from tao.core.console import Console
from tao.core.errors import InputError, ResourceError
from tao.core.model import BaseModel, chat_token_ids, stop_token_ids
from tao.core.types import Ask, Candidate, Prompt, Sampling

START_SERVER = "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve BASE --enable-lora --max-lora-rank RANK"
QUICK_TIMEOUT_S = 30  # listing models
LOAD_TIMEOUT_S = 600  # loading an adapter
REQUEST_TIMEOUT_S = 3600  # one prompt's candidates, possibly queued behind other clients' requests


class _Replied(Exception):
    """The server answered with an HTTP error; ``message`` is its own one-line explanation."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(f"HTTP {status}: {message}")


def adapter_name(adapter: Path) -> str:
    """The name an adapter directory is loaded under: its absolute path and its weights file's size and time, so a
    directory rewritten in place is loaded again rather than served stale."""
    weights = (adapter / "adapter_model.safetensors").resolve()
    stat = weights.stat()
    key = f"{adapter.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
    return "tao-" + hashlib.sha256(key.encode()).hexdigest()[:16]


class ServerClient:
    """JSON over HTTP to one vLLM OpenAI-compatible server, with the standard library only."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self._served: str | None = None

    def served_model(self) -> str:
        """The server's base model name (the first model it lists that is not an adapter); asked once."""
        if self._served is None:
            try:
                reply = self.get("/v1/models", QUICK_TIMEOUT_S)
            except _Replied as exc:
                raise ResourceError(f"the vLLM server at {self.url} cannot list its models ({exc})") from None
            listed = (reply.get("data") if isinstance(reply, dict) else None) or []
            bases = [m["id"] for m in listed if isinstance(m, dict) and "id" in m and not m.get("parent")]
            if not bases:
                raise ResourceError(f"the vLLM server at {self.url} lists no model")
            self._served = bases[0]
        return self._served

    def get(self, path: str, timeout: float) -> Any:
        return self._send(urllib.request.Request(self.url + path), timeout)

    def post(self, path: str, body: dict[str, Any], timeout: float) -> Any:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        return self._send(urllib.request.Request(self.url + path, data, headers, method="POST"), timeout)

    def _send(self, request: urllib.request.Request, timeout: float) -> Any:
        """The reply as JSON (or text); HTTP errors as ``_Replied``; no server as a one-line ResourceError."""
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                raw = reply.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            raise _Replied(exc.code, _server_message(exc.read().decode("utf-8", "replace"), exc.reason)) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ResourceError(
                f"cannot reach the vLLM server at {self.url} ({reason}); start one where the base model and the run "
                f"directory are at the same paths: `{START_SERVER} --port PORT`, or set rollout.server_url"
            ) from None
        try:
            return json.loads(raw)
        except ValueError:
            return raw


class VllmServerEngine:
    """Generates with a running vLLM OpenAI-compatible server at ``rollout.server_url``."""

    name = "vllm-server"

    def __init__(self, base: BaseModel, tokenizer: Any, config: Config, console: Console):
        self.tokenizer = tokenizer
        self.server = ServerClient(config.rollout.server_url)
        self.in_flight = config.rollout.batch_size  # sequences asked for at once: batch_size // n requests
        self.console = console
        self.stop_ids = stop_token_ids(tokenizer, base.path)
        self._loaded: set[str] = set()  # adapter names loaded by this engine

    def prompt_token_ids(self, prompt: Prompt) -> list[int]:
        return chat_token_ids(self.tokenizer, prompt)

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling, adapter: Path | None) -> list[Candidate]:
        return self.generate_many([Ask(tuple(prompts), sampling)], adapter)[0]

    def generate_many(self, asks: Sequence[Ask], adapter: Path | None) -> list[list[Candidate]]:
        """Every ask's requests in flight together, at most ``rollout.batch_size`` sequences at a time."""
        model = self._model(adapter)
        items = [(k, p) for k, ask in enumerate(asks) for p in ask.prompts]
        bodies = [self._body(model, p, asks[k].sampling) for k, p in items]
        out: list[list[Candidate]] = [[] for _ in asks]
        widest = max((ask.sampling.n for ask in asks), default=1)
        pool = ThreadPoolExecutor(max(1, self.in_flight // widest), thread_name_prefix="vllm-server")
        try:
            futures = [pool.submit(self.server.post, "/v1/completions", body, REQUEST_TIMEOUT_S) for body in bodies]
            with self.console.bar(len(items), "generate", unit="prompt") as bar:
                for (k, prompt), future in zip(items, futures, strict=True):
                    out[k] += self._candidates(prompt.id, self._answered(future), asks[k].sampling)
                    bar.update(1)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return out

    def release(self) -> None:
        """Nothing to give back: the server's memory is on other GPUs."""

    def close(self) -> None:
        """Forget what this engine loaded; the server, and the adapters on it, belong to whoever started it."""
        self._loaded.clear()

    def _model(self, adapter: Path | None) -> str:
        """What a request names as its ``model``: the base, or the adapter (loaded on first use)."""
        served = self.server.served_model()  # also: the server is there, before anything else is sent
        if adapter is None:
            return served
        if not (adapter / "adapter_model.safetensors").is_file():
            raise InputError("no adapter_model.safetensors; tao loads adapters from safetensors only", file=adapter)
        name = adapter_name(adapter)
        if name not in self._loaded:
            self._load(name, adapter.resolve())
            self._loaded.add(name)
        return name

    def _load(self, name: str, path: Path) -> None:
        try:
            self.server.post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(path)}, LOAD_TIMEOUT_S)
        except _Replied as exc:
            if exc.status == 400 and "already been loaded" in exc.message:
                return  # by an earlier process: the name stands for this very directory and weights file
            raise ResourceError(
                f"the vLLM server at {self.server.url} could not load the adapter {path} ({exc}); the server must see "
                f"this same path (a shared filesystem), and run as `{START_SERVER}` with RANK >= lora.rank"
            ) from None

    def _body(self, model: str, prompt: Prompt, sampling: Sampling) -> dict[str, Any]:
        """One prompt's request, sampled as the offline vLLM engine samples (the model's generation config ignored)."""
        greedy = sampling.temperature == 0
        body = {
            "model": model,
            "prompt": self.prompt_token_ids(prompt),
            "n": sampling.n,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": 0,
            "min_p": 0.0,
            "repetition_penalty": 1.0,
            "max_tokens": sampling.max_new_tokens,
            "seed": None if greedy else request_seed(sampling.seed, prompt.id),
            "logprobs": None if greedy else 0,  # 0: the sampled token's log-probability only
            "stop_token_ids": self.stop_ids,
            "return_token_ids": True,
        }
        return {k: v for k, v in body.items() if v is not None}

    def _answered(self, future: Any) -> dict[str, Any]:
        try:
            reply = future.result()
        except _Replied as exc:
            raise ResourceError(f"the vLLM server at {self.server.url} refused a generation request ({exc})") from None
        if not isinstance(reply, dict):
            raise ResourceError(f"the server at {self.server.url} answered a completion with no JSON object")
        return reply

    def _candidates(self, prompt_id: str, response: dict[str, Any], sampling: Sampling) -> list[Candidate]:
        choices = sorted(response.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != sampling.n or any(c.get("token_ids") is None for c in choices):
            raise ResourceError(
                f"the server at {self.server.url} answered without {sampling.n} choices with token ids "
                "(tao needs vLLM's OpenAI-compatible server, 0.32)"
            )
        return [self._candidate(prompt_id, j, choice, sampling) for j, choice in enumerate(choices)]

    def _candidate(self, prompt_id: str, index: int, choice: dict[str, Any], sampling: Sampling) -> Candidate:
        """As the offline engine builds it: the token ids as generated, the end-of-turn token kept when finished."""
        ids = [int(t) for t in choice["token_ids"]]
        finished = choice.get("finish_reason") == "stop"
        ended = finished and bool(ids) and ids[-1] in self.stop_ids
        text = self.tokenizer.decode(ids[:-1] if ended else ids, skip_special_tokens=True)
        logprobs = None
        if choice.get("logprobs") is not None:
            logprobs = tuple(float(x) for x in choice["logprobs"]["token_logprobs"])
            if len(logprobs) != len(ids):
                raise ResourceError(f"the server at {self.server.url} sent log-probabilities that miss tokens")
        strategy = "greedy" if sampling.temperature == 0 else "sample"
        return Candidate(prompt_id, index, text, tuple(ids), finished, strategy, logprobs)


def _server_message(body: str, reason: str) -> str:
    """The server's explanation in one line: vLLM's ``{"error": {"message"}}``, FastAPI's ``{"detail"}``, or text."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    message: Any = None
    if isinstance(data, dict):
        error = data.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        message = message or data.get("detail") or data.get("message")
    text = str(message if message else body.strip() or reason)
    return " ".join(text.split())[:500]

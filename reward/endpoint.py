"""An OpenAI-compatible chat endpoint as a judge's voice: concurrent requests, retries with backoff, timeouts.

Standard library HTTP only. A request that fails (connection refused or reset, a timeout, HTTP 429 or 5xx) is tried
again up to ``retries`` times, waiting 1, 2, 4, ... seconds; one that still fails, or that the endpoint refuses (any
other 4xx), gets no reply (None) and is counted in ``failed``: the judge then has no opinion on it, as on a reply
it cannot read. The API key is read from the environment variable the config names, sent as a bearer token, and
never stored beyond this object, written to a file or put in an error message.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tao.core.config import JudgeConfig
from tao.core.errors import InputError

RETRIED = {429, 500, 502, 503, 504}
BACKOFF = 1.0  # seconds before the first retry; doubled each time


@dataclass
class Usage:
    """What the endpoint was asked and answered, for the round's figures."""

    requests: int = 0
    failed: int = 0  # requests that got no reply after every try
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Endpoint:
    config: JudgeConfig
    max_tokens: int
    usage: Usage = field(default_factory=Usage)

    def __post_init__(self) -> None:
        if not self.config.url or not self.config.model:
            raise InputError("a judge at an endpoint needs judge.url and judge.model", field="judge")
        self._key = ""
        if self.config.api_key_env:
            self._key = os.environ.get(self.config.api_key_env, "")
            if not self._key:
                raise InputError(
                    f"the environment variable {self.config.api_key_env} is not set", field="judge.api_key_env"
                )

    def check(self) -> None:
        """Before any work: the endpoint answers and serves ``judge.model``; else one line naming it."""
        try:
            listed = self._request("GET", "/models", None, self.config.timeout)
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise InputError(f"the judge endpoint does not answer ({reason})", field="judge.url") from None
        served = [m.get("id") for m in listed.get("data", []) if isinstance(m, dict)]
        if served and self.config.model not in served:
            raise InputError(f"the endpoint serves {served}, not {self.config.model!r}", field="judge.model")

    def replies(self, asks: Sequence[str]) -> list[str | None]:
        """The endpoint's greedy reply to each ask, ``concurrency`` at a time; None where every try failed."""
        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            return list(pool.map(self._reply, asks))

    def _reply(self, text: str) -> str | None:
        body = {
            "model": self.config.model,
            "messages": [{"role": "user", "content": text}],
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }
        for attempt in range(self.config.retries + 1):
            if attempt:
                self.usage.retries += 1
                time.sleep(BACKOFF * 2 ** (attempt - 1))
            try:
                answer = self._request("POST", "/chat/completions", body, self.config.timeout)
            except urllib.error.HTTPError as exc:
                if exc.code not in RETRIED:
                    break
                continue
            except (urllib.error.URLError, TimeoutError, OSError, ValueError):
                continue
            self.usage.requests += 1
            usage = answer.get("usage") or {}
            self.usage.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.usage.completion_tokens += int(usage.get("completion_tokens") or 0)
            try:
                content = answer["choices"][0]["message"]["content"]
            except (KeyError, IndexError, TypeError):
                return ""  # an answer in another shape: a reply the judge cannot read
            return content if isinstance(content, str) else ""
        self.usage.failed += 1
        return None

    def _request(self, method: str, path: str, body: dict | None, timeout: float) -> dict:
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.config.url.rstrip("/") + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (the user's own URL)
            parsed = json.loads(response.read().decode("utf-8"))
        if not isinstance(parsed, dict):
            raise ValueError("not a JSON object")
        return parsed

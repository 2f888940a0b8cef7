"""An LLM judge as a scorer: ``judge:RUBRIC_FILE[@JUDGE]`` and ``judge_group:RUBRIC_FILE[@JUDGE]``.

``judge`` rates each candidate alone against the rubric, 1 to 10 (scaled to 0..1). ``judge_group`` shows the
judge all candidates of a prompt at once, labelled A, B, C..., and asks for a 0-10 score per label: a relative
judgement, which is all GRPO needs (its advantages are relative within the group), in the spirit of ART's RULER.
The judge is the run's base model unless ``@JUDGE`` names another: a local model directory, ``endpoint`` (the
OpenAI-compatible chat endpoint of the config's ``judge`` section: a `vllm serve` of a strong model, a hosted API;
reward/endpoint.py), or ``http(s)://HOST/v1#MODEL`` (an endpoint named in the spec itself, the rest of its settings
from the config). It answers greedily.

Judgements are cached on disk by (judge model or endpoint, mode, rubric, prompt, candidates), so a rerun, a resumed
round or ``tao reward label`` on the same candidates does not pay twice. Output the judge did not format as asked
becomes None (no opinion) and is counted in ``unparsed``; it never stops the run.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from reward.endpoint import Endpoint
from tao.core.config import JudgeConfig
from tao.core.errors import InputError
from tao.core.types import Candidate, Message, Prompt, Sampling

POINTWISE = (
    "You are grading an answer.\nRubric:\n{rubric}\n\nRequest:\n{request}\n\nAnswer:\n{answer}\n\n"
    "How well does the answer follow the rubric? Reply with one number from 1 (worst) to 10 (best) and nothing else."
)
GROUP = (
    "You are comparing answers to the same request.\nRubric:\n{rubric}\n\nRequest:\n{request}\n\n{answers}\n\n"
    "Score every answer from 0 (worst) to 10 (best) by the rubric, one line each, like 'A: 7'."
)
_NUMBER = re.compile(r"\b(10|[1-9])\b")
_LABELLED = re.compile(r"^\s*\(?([A-Z])\)?\s*[:=\-]\s*(10|[0-9])\b", re.MULTILINE)
JUDGE_TOKENS = 48


class JudgeScorer:
    def __init__(
        self, spec: str, grouped: bool, base_model: str, trust_remote_code: bool, endpoint: JudgeConfig | None = None
    ):
        self.name = spec
        self.grouped = grouped
        rest = spec.split(":", 1)[1]
        rubric_file, _, model = rest.partition("@")
        try:
            self.rubric = Path(rubric_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the rubric ({exc})", file=rubric_file, field=spec) from None
        if not self.rubric:
            raise InputError("the rubric is empty", file=rubric_file, field=spec)
        self.model_name = model or base_model
        self.trust_remote_code = trust_remote_code
        self.endpoint: Endpoint | None = None
        if model == "endpoint" or model.startswith(("http://", "https://")):
            settings = endpoint or JudgeConfig()
            if model != "endpoint":
                url, _, served = model.partition("#")
                settings = replace(settings, url=url, model=served or settings.model)
            self.endpoint = Endpoint(settings, JUDGE_TOKENS)
            self.endpoint.check()
        self.unparsed = 0  # judge outputs that were not in the asked format (scored None)
        self.calls = 0  # judge generations actually run (cache misses)
        self._engine: Any = None
        self._cache: dict[str, Any] | None = None
        self._resolved: tuple[Any, Any] | None = None  # (BaseModel, ModelConfig), found and hashed once

    def score(self, prompts: Sequence[Prompt], candidates: Sequence[Candidate]) -> list[float | None]:
        if not self.grouped:
            keys = [self._key(p, [c.text]) for p, c in zip(prompts, candidates, strict=True)]
            asks = [
                self._ask(POINTWISE.format(rubric=self.rubric, request=p.text, answer=c.text), k)
                for p, c, k in zip(prompts, candidates, keys, strict=True)
            ]
            replies = self._judge(keys, asks)
            return [self._parse_one(r) for r in replies]
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(prompts):
            groups.setdefault(p.id, []).append(i)
        scores: list[float | None] = [None] * len(candidates)
        members = list(groups.values())
        keys = [self._key(prompts[m[0]], [candidates[i].text for i in m]) for m in members]
        asks = [
            self._ask(self._group_text(prompts[m[0]], [candidates[i].text for i in m]), k)
            for m, k in zip(members, keys, strict=True)
        ]
        for m, reply in zip(members, self._judge(keys, asks), strict=True):
            for i, value in zip(m, self._parse_group(reply, len(m)), strict=True):
                scores[i] = value
        return scores

    def _group_text(self, prompt: Prompt, texts: list[str]) -> str:
        answers = "\n\n".join(f"Answer {chr(65 + j)}:\n{t}" for j, t in enumerate(texts))
        return GROUP.format(rubric=self.rubric, request=prompt.text, answers=answers)

    def _ask(self, text: str, key: str) -> Prompt:
        return Prompt(key, (Message("user", text),))

    def _key(self, prompt: Prompt, texts: list[str]) -> str:
        blob = json.dumps([self.grouped, self.rubric, prompt.chat(), texts], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _judge(self, keys: list[str], asks: list[Prompt]) -> list[str | None]:
        """The judge's reply to each ask: from the cache, else generated (greedy) and cached."""
        cache = self._load_cache()
        missing = [(k, a) for k, a in zip(keys, asks, strict=True) if k not in cache]
        if missing and self.endpoint is not None:
            replies = self.endpoint.replies([a.text for _, a in missing])
            # a request that failed every try is not cached: a rerun asks again
            fresh = {k: r for (k, _), r in zip(missing, replies, strict=True) if r is not None}
        elif missing:
            engine = self._engine_now()
            sampling = Sampling(1, 0.0, 1.0, JUDGE_TOKENS, seed=0)
            fresh = {
                k: c.text
                for (k, _), c in zip(missing, engine.generate([a for _, a in missing], sampling, None), strict=True)
            }
        if missing:
            self.calls += len(fresh)
            cache.update(fresh)
            with open(self._cache_path(), "a", encoding="utf-8") as fh:  # a torn last line is skipped on reading
                fh.writelines(json.dumps({"key": k, "reply": v}) + "\n" for k, v in fresh.items())
        return [cache.get(k) for k in keys]

    def _parse_one(self, reply: str | None) -> float | None:
        if reply is None:  # the endpoint failed every try (counted in its usage)
            return None
        match = _NUMBER.search(reply)
        if not match:
            self.unparsed += 1
            return None
        return (int(match.group(1)) - 1) / 9

    def _parse_group(self, reply: str | None, size: int) -> list[float | None]:
        if reply is None:
            return [None] * size
        found = {m.group(1): int(m.group(2)) / 10 for m in _LABELLED.finditer(reply)}
        values = [found.get(chr(65 + j)) for j in range(size)]
        self.unparsed += sum(v is None for v in values)
        return values

    def _engine_now(self) -> Any:
        if self._engine is None:
            from rollouts.transformers_engine import TransformersEngine
            from tao.core.config import LoraConfig
            from tao.core.console import Console
            from tao.core.model import Policy

            base, config = self._base()
            self._engine = TransformersEngine(Policy(base, config, LoraConfig()), 16, Console(quiet=True))
        return self._engine

    def _base(self) -> tuple[Any, Any]:
        if self._resolved is None:
            from tao.core.config import ModelConfig
            from tao.core.console import Console
            from tao.core.model import resolve_base

            config = ModelConfig(name=self.model_name, trust_remote_code=self.trust_remote_code)
            self._resolved = (resolve_base(config, Console(quiet=True)), config)
        return self._resolved

    def _cache_path(self) -> Path:
        from tao.core.embedded import cache_dir

        if self.endpoint is not None:  # one cache per endpoint and model (the key is not part of it)
            name = hashlib.sha256(f"{self.endpoint.config.url}|{self.endpoint.config.model}".encode()).hexdigest()
        else:
            name = self._base()[0].sha256  # one cache per judge model
        path = cache_dir() / "judge" / f"{name[:16]}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _load_cache(self) -> dict[str, Any]:
        if self._cache is None:
            self._cache = {}
            path = self._cache_path()
            for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
                try:
                    row = json.loads(line)
                    self._cache[row["key"]] = row["reply"]
                except (ValueError, KeyError, TypeError):
                    continue
        return self._cache

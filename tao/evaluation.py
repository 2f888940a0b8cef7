"""Held-out evaluation: greedy answers scored like the candidates, and paired bootstrap intervals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reward.scorer import RewardSet
from rollouts.engine import Engine
from tao.core.config import Config
from tao.core.console import Console
from tao.core.storage import read_jsonl, write_jsonl
from tao.core.types import Answer, Candidate, Prompt, Sampling


def evaluate(
    engine: Engine, rewards: RewardSet, prompts: Sequence[Prompt], max_new_tokens: int, adapter: Path | None
) -> list[Answer]:
    """One greedy answer per prompt (the answer the application would get) from the base with ``adapter``,
    scored by ``rewards``."""
    if not prompts:
        return []
    sampling = Sampling(n=1, temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens, seed=0)
    return _scored(engine.generate(prompts, sampling, adapter), prompts, rewards)


def rescore(answers: Sequence[Answer], prompts: Sequence[Prompt], rewards: RewardSet) -> list[Answer]:
    """The same answers, scored by ``rewards`` instead."""
    by_id = {p.id: p for p in prompts}
    candidates = [Candidate(a.prompt_id, 0, a.text, (), a.finished, "greedy") for a in answers]
    return _scored(candidates, [by_id[a.prompt_id] for a in answers], rewards)


def _scored(candidates: Sequence[Candidate], prompts: Sequence[Prompt], rewards: RewardSet) -> list[Answer]:
    scores = rewards.score(prompts, candidates)
    return [
        Answer(c.prompt_id, c.text, c.finished, s.total, s.parts, rewards.identity)
        for c, s in zip(candidates, scores, strict=True)
    ]


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float  # bootstrap 95% interval
    high: float
    n: int


def bootstrap(values: Sequence[float], samples: int = 2000, seed: int = 0, level: float = 0.95) -> Interval:
    """Mean of ``values`` with a percentile bootstrap interval."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("no values to bootstrap")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(samples, data.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(data.mean()), float(low), float(high), int(data.size))


def paired_difference(base: Sequence[Answer], other: Sequence[Answer], seed: int = 0) -> Interval | None:
    """Mean of (other - base) over the prompts both scored, with a bootstrap interval; None if none."""
    base_scores = {a.prompt_id: a.score for a in base if a.score is not None}
    diffs = [a.score - base_scores[a.prompt_id] for a in other if a.score is not None and a.prompt_id in base_scores]
    return bootstrap(diffs, seed=seed) if diffs else None


def mean_score(answers: Sequence[Answer]) -> float | None:
    scores = [a.score for a in answers if a.score is not None]
    return float(np.mean(scores)) if scores else None


def wins_ties_losses(reference: Sequence[Answer], answers: Sequence[Answer]) -> dict[str, int]:
    """Per prompt both scored: better, equal or worse than the reference."""
    ref = {a.prompt_id: a.score for a in reference}
    pairs = [(a.score, ref[a.prompt_id]) for a in answers if a.score is not None and ref.get(a.prompt_id) is not None]
    return {
        "wins": sum(a > b for a, b in pairs),
        "ties": sum(a == b for a, b in pairs),
        "losses": sum(a < b for a, b in pairs),
    }


def baseline(
    path: Path, engine: Engine, rewards: RewardSet, prompts: Sequence[Prompt], config: Config, console: Console
) -> list[Answer]:
    """The base model's greedy answers to ``prompts``, cached at ``path`` by what they depend on (reward, answer
    budget, quantisation, engine): only the missing ones are generated."""
    max_new_tokens = config.rollout.max_new_tokens
    key = f"{rewards.identity}|{config.model.quantize}|{max_new_tokens}|{engine.name}"
    rows = read_jsonl(path) if path.is_file() else []
    cached = {(r["prompt_id"], r["key"]): Answer.from_row(r) for r in rows}
    missing = [p for p in prompts if (p.id, key) not in cached]
    if missing:
        console.say(f"evaluating the base model on {len(missing)} held-out prompts")
        cached.update(((a.prompt_id, key), a) for a in evaluate(engine, rewards, missing, max_new_tokens, None))
        write_jsonl(path, ({**a.to_row(), "key": k} for (_, k), a in cached.items()))
    return [cached[p.id, key] for p in prompts]

"""Held-out evaluation: greedy answers scored like the candidates, and paired bootstrap intervals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reward.scorer import RewardSet
from rollouts.engine import Engine
from tao.core.types import Candidate, Prompt, Sampling


def evaluate(
    generator: Engine, rewards: RewardSet, prompts: Sequence[Prompt], max_new_tokens: int, adapter: Path | None
) -> list[dict]:
    """One greedy answer per prompt (the answer the application would get) from the base with ``adapter``,
    scored. One row per prompt; ``reward`` names the reward that scored it (:attr:`RewardSet.identity`)."""
    if not prompts:
        return []
    sampling = Sampling(n=1, temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens, seed=0)
    answers = generator.generate(prompts, sampling, adapter)
    scores = rewards.score(prompts, answers)
    return [
        {
            "prompt_id": a.prompt_id,
            "score": s.total,
            "scores": s.parts,
            "reward": rewards.identity,
            "finished": a.finished,
            "text": a.text,
        }
        for a, s in zip(answers, scores, strict=True)
    ]


def rescore(rows: Sequence[dict], prompts: Sequence[Prompt], rewards: RewardSet) -> list[dict]:
    """``rows`` (as :func:`evaluate` writes them) with each answer's score by ``rewards`` instead."""
    by_id = {p.id: p for p in prompts}
    answers = [Candidate(r["prompt_id"], 0, r["text"], (), r["finished"], "greedy") for r in rows]
    totals = rewards.totals([by_id[r["prompt_id"]] for r in rows], answers)
    return [{**r, "score": t, "reward": rewards.identity} for r, t in zip(rows, totals, strict=True)]


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


def paired_difference(base: Sequence[dict], other: Sequence[dict], seed: int = 0) -> Interval | None:
    """Mean of (other - base) over the prompts both scored, with a bootstrap interval; None if none."""
    base_scores = {r["prompt_id"]: r["score"] for r in base if r["score"] is not None}
    diffs = [
        r["score"] - base_scores[r["prompt_id"]]
        for r in other
        if r["score"] is not None and r["prompt_id"] in base_scores
    ]
    return bootstrap(diffs, seed=seed) if diffs else None


def mean_score(rows: Sequence[dict]) -> float | None:
    scores = [r["score"] for r in rows if r["score"] is not None]
    return float(np.mean(scores)) if scores else None

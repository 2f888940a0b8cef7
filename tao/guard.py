"""The reward-hacking guard: after each round, is the held-out improvement real?

A model trained on a reward learns whatever raises it, including its blind spots. Each round's held-out
answers are therefore also scored by ``eval.check`` (scorers the update never trains on: a verifier, a second
reward model) and compared with the previous round's (the base model's for the first round, and for a round whose
reward differs from the previous round's: totals of different rewards are not comparable). The guard raises
an alarm when

- the reward rose on the held-out prompts while the check fell (the update learned the reward, not the task);
- the answers' mean length left [1/r, r] times the base model's (r = ``eval.max_length_ratio``);
- the answers started repeating themselves: the share of distinct word 4-grams fell by more than 0.1 from the
  base model's (``rule:repetition``).

``eval.guard: warn`` prints the alarms; ``stop`` also ends the run after the round and names the best round.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import mean

from reward.scorer import RewardSet, build_scorer
from tao.core.types import Candidate, Prompt

REPETITION_DROP = 0.1  # a fall in the distinct-4-gram share larger than this is an alarm


def inspect(
    prompts: Sequence[Prompt],
    base: Sequence[dict],
    previous: Sequence[dict],
    rows: Sequence[dict],
    check: RewardSet | None,
    max_length_ratio: float,
) -> dict:
    """Figures and alarms for one round's held-out answers ``rows`` (rows as evaluation.evaluate writes them)."""
    by_id = {p.id: p for p in prompts}
    figures: dict = {
        "reward": _mean(r["score"] for r in rows),
        "previous_reward": _mean(r["score"] for r in previous),
        "length_ratio": _words(rows) / _words(base) if _words(base) else None,  # None: the base answered nothing
        "repetition": _repetition(rows, by_id),
        "base_repetition": _repetition(base, by_id),
    }
    if check is not None:
        figures["check"] = check.specs
        figures["check_mean"] = _mean(check.totals(*_answers(rows, by_id)))
        figures["previous_check_mean"] = _mean(check.totals(*_answers(previous, by_id)))
    figures["alarms"] = alarms(figures, max_length_ratio)
    return figures


def alarms(f: dict, max_length_ratio: float) -> list[str]:
    out = []
    known = all(f.get(k) is not None for k in ("reward", "previous_reward", "check_mean", "previous_check_mean"))
    if known and f["reward"] > f["previous_reward"] and f["check_mean"] < f["previous_check_mean"]:
        out.append(
            f"the held-out reward rose ({f['previous_reward']:.3f} -> {f['reward']:.3f}) while the check fell "
            f"({f['previous_check_mean']:.3f} -> {f['check_mean']:.3f})"
        )
    if f["length_ratio"] is not None and not 1 / max_length_ratio <= f["length_ratio"] <= max_length_ratio:
        out.append(f"held-out answers are {f['length_ratio']:.2f} times as long as the base model's")
    rep, base_rep = f["repetition"], f["base_repetition"]
    if rep is not None and base_rep is not None and base_rep - rep > REPETITION_DROP:
        out.append(f"held-out answers repeat themselves more (distinct 4-gram share {base_rep:.2f} -> {rep:.2f})")
    return out


def best_round(evaluations: Sequence[tuple[int, dict]]) -> int | None:
    """The round whose held-out answers did best by the check (by the reward when there is no check)."""
    scored = [(e.get("guard", {}).get("check_mean", e.get("mean")), i) for i, e in evaluations]
    scored = [(value, i) for value, i in scored if value is not None]
    return max(scored)[1] if scored else None


def _answers(rows: Sequence[dict], by_id: dict[str, Prompt]) -> tuple[list[Prompt], list[Candidate]]:
    prompts = [by_id[r["prompt_id"]] for r in rows]
    candidates = [Candidate(r["prompt_id"], 0, r["text"], (), r["finished"], "greedy") for r in rows]
    return prompts, candidates


def _repetition(rows: Sequence[dict], by_id: dict[str, Prompt]) -> float | None:
    return _mean(build_scorer("rule:repetition").score(*_answers(rows, by_id)))


def _words(rows: Sequence[dict]) -> float:
    return mean(len(r["text"].split()) for r in rows) if rows else 0.0


def _mean(values: object) -> float | None:
    known = [v for v in values if v is not None]  # type: ignore[attr-defined]
    return mean(known) if known else None

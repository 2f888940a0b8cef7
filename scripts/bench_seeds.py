"""Gains over several seeds of `bench_learning`, with intervals that count both sources of noise.

A single run's held-out gain swings by 5-10 points with the seed, so settings are compared over seeds. Each ARM is
a list of `bench_learning` result files (one per seed, the same seeds in the same order for every arm); the script
reads each run's per-prompt greedy results at one budget (recorded in the result file, or for older files its
run's `compare/items-*.jsonl`) and reports, per arm, the mean gain over the base across seeds with two bootstrap
intervals:

- prompts: resample the held-out prompts (the same draw for every seed and arm), seeds fixed: "these seeds, on
  prompts like these";
- seeds and prompts: resample the seeds as well: "a new seed, on prompts like these" (the honest one; wide with
  few seeds).

And the difference of each arm from the first, paired by seed and prompt. A file written `RESULT.json@MINUTES` is
read at that budget instead of `--budget`: to compare runs after the same number of rounds when their rounds took
different times.

    python scripts/bench_seeds.py --budget 60 \\
        --arm recipe=docs/results/bench_learning_guarded_rep.json,docs/results/bench_learning_s3.json \\
        --arm unscaled=docs/results/bench_learning_unscaled_s1.json,docs/results/bench_learning_unscaled_s3.json \\
        --out docs/results/bench_seeds.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESAMPLES = 10_000


def gains(result_file: Path, budget: str) -> dict[str, float]:
    """Per held-out prompt: the model made at ``budget`` minus the base (pass = 1, fail = 0)."""
    result = json.loads(result_file.read_text())
    made = result["arms"]["tao"][budget]
    if "passed" in made:  # recorded in the result file (bench_learning.py since 2026-11-30)
        base = result["base"]["passed"]
        return {p: float(made["passed"][p]) - float(base[p]) for p in base}
    spec = Path(made["spec"])
    run = spec if spec.is_absolute() else ROOT / spec
    compare = run.parents[1] / "compare"
    answers: dict[str, dict[str, float]] = {}
    for items in sorted(compare.glob("items-*.jsonl")):
        for line in items.read_text().splitlines():
            row = json.loads(line)
            model = "base" if row["model"] == "base" else Path(row["model"]).name
            answers.setdefault(model, {})[row["prompt_id"]] = float(row["score"])
    if spec.name not in answers:  # no round within the budget: the model is the base
        return dict.fromkeys(answers["base"], 0.0)
    return {p: answers[spec.name][p] - answers["base"][p] for p in answers["base"]}


def summary(table: np.ndarray, rng: np.random.Generator) -> dict:
    """``table``: seeds x prompts of gains. Mean over both, and its two bootstrap intervals."""
    seeds, prompts = table.shape
    p = rng.integers(0, prompts, size=(RESAMPLES, prompts))
    s = rng.integers(0, seeds, size=(RESAMPLES, seeds))
    by_prompts = table[:, p].mean(axis=(0, 2))
    by_both = np.array([table[s[i]][:, p[i]].mean() for i in range(RESAMPLES)])
    return {
        "per_seed": [round(float(x), 4) for x in table.mean(axis=1)],
        "mean": round(float(table.mean()), 4),
        "prompts_interval": [round(float(x), 4) for x in np.percentile(by_prompts, [2.5, 97.5])],
        "seeds_and_prompts_interval": [round(float(x), 4) for x in np.percentile(by_both, [2.5, 97.5])],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arm", action="append", required=True, help="NAME=RESULT.json[,RESULT.json...]")
    parser.add_argument("--budget", default="60", help="minutes, as in the result files")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    arms: dict[str, np.ndarray] = {}
    files: dict[str, list[str]] = {}
    prompts: list[str] | None = None
    for spec in args.arm:
        name, listed = spec.split("=", 1)
        files[name] = listed.split(",")
        per_seed = []
        for entry in files[name]:
            path, _, budget = entry.partition("@")  # FILE@MINUTES: read at its own budget
            per_seed.append(gains(Path(path), budget or args.budget))
        prompts = prompts or sorted(per_seed[0])
        if any(sorted(g) != prompts for g in per_seed):
            raise SystemExit(f"{name}: the runs were not evaluated on the same held-out prompts")
        arms[name] = np.array([[g[p] for p in prompts] for g in per_seed])
    counts = {len(t) for t in arms.values()}
    if len(counts) != 1:
        raise SystemExit("every arm needs the same seeds, in the same order")
    rng = np.random.default_rng(0)
    reference = next(iter(arms))
    report = {"budget_minutes": float(args.budget), "prompts": len(prompts or []), "arms": {}}
    print(
        f"{len(prompts or [])} held-out prompts, {counts.pop()} seeds, "
        f"gains in points at {args.budget} minutes (a FILE@M at M)"
    )
    for name, table in arms.items():
        entry = {"files": files[name], "gain": summary(table, rng)}
        if name != reference:
            entry["minus_" + reference] = summary(table - arms[reference], rng)
        report["arms"][name] = entry
        for key in [k for k in ("gain", "minus_" + reference) if k in entry]:
            s = entry[key]
            per_seed = ", ".join(f"{100 * x:+.1f}" for x in s["per_seed"])
            lo, hi = (100 * x for x in s["seeds_and_prompts_interval"])
            plo, phi = (100 * x for x in s["prompts_interval"])
            print(
                f"{name:>12} {key:>16}: {100 * s['mean']:+.1f} ({per_seed}); "
                f"prompts [{plo:+.1f}, {phi:+.1f}], seeds and prompts [{lo:+.1f}, {hi:+.1f}]"
            )
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

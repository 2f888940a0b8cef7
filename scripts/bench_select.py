"""Keep the round that a label-free check prefers, or the last one? (round selection, post hoc)

For each `scripts/bench_learning.py` run given, every round finished within ``--budget`` minutes answers the
``--validation`` prompts greedily (`tao compare`, scored by the instruction checker, prompt-level strict). That
score needs no labels: the instructions are in the prompts, as with `eval.check: [rule:all_instructions]` on a
run's own held-out prompts. The round with the best validation score is *selected* (ties: the later round). Its
gain over the base on the run's held-out prompts (read from the run's bench_learning JSON; rounds that JSON did not
evaluate are evaluated here) is set against the last round's. Prints each run, the mean gains and their ratio
(selected / last), and writes JSON.

    python scripts/bench_select.py runs/bench-learning-guarded=docs/results/bench_learning_guarded.json \
        runs/bench-learning-rep=docs/results/bench_learning_guarded_rep.json ... \
        --validation runs/bench-quality/ifeval/heldout.jsonl --out docs/results/bench_select.json

Use validation prompts that are neither the runs' training nor their held-out prompts (the example uses
`bench_quality`'s validation half, which `bench_learning` keeps out of both).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench_average import rounds_within, write_result  # noqa: E402


def compare(models: list[str], prompts: Path, out: Path) -> dict:
    """`tao compare base MODELS` on ``prompts`` with one thread (reused when ``out`` already holds them)."""
    report = out / "report.json"
    if report.is_file() and not set(models) - set(json.loads(report.read_text())["models"]):
        return json.loads(report.read_text())
    command = [sys.executable, "-m", "tao.cli", "compare", "base", *models, "--prompts", str(prompts)]
    command += ["--by", "rule:all_instructions", "--out", str(out), "--quiet", "--set", "run.threads=1"]
    subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(report.read_text())


def compare_split(models: list[str], prompts: Path, out: Path, jobs: int) -> dict[str, float]:
    """Each model's paired gain over the base, ``jobs`` compare processes at a time (models dealt out evenly)."""
    chunks = [models[i::jobs] for i in range(jobs) if models[i::jobs]]
    with ThreadPoolExecutor(len(chunks)) as pool:
        reports = list(pool.map(lambda i: compare(chunks[i], prompts, out / f"part-{i}"), range(len(chunks))))
    return {m: r["differences"][m]["mean"] for r in reports for m in r["models"] if m != "base"}


def heldout_gains(run: Path, bench_json: Path, rounds: list[str], work: Path, jobs: int) -> dict[str, float]:
    """Each round's held-out gain: from the run's bench_learning JSON, else measured on the run's held-out file."""
    result = json.loads(bench_json.read_text())
    base = result["base"]["mean"]
    known = {a["round"]: a["mean"] - base for a in result["arms"]["tao"].values() if a.get("round")}
    gains = {r: known[int(r[-4:])] for r in rounds if int(r[-4:]) in known}
    missing = [r for r in rounds if r not in gains]
    if missing:
        gains |= compare_split(missing, run / "heldout.jsonl", work / f"heldout-{run.name}", jobs)
    return gains


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="RUN_DIR=BENCH_JSON: a bench_learning --work directory and its --out")
    parser.add_argument("--budget", type=float, default=60, help="minutes: the rounds finished within it")
    parser.add_argument("--validation", type=Path, required=True, help="items with IFEval categories (JSONL)")
    parser.add_argument("--jobs", type=int, default=2, help="compare processes at a time, one thread each")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-select")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "bench_select.json")
    args = parser.parse_args()
    started = time.perf_counter()
    runs = {Path(d): Path(j) for d, j in (spec.split("=", 1) for spec in args.runs)}
    rounds = {run: [str(a.parent) for a in rounds_within(run, args.budget)] for run in runs}
    every = [r for rs in rounds.values() for r in rs]
    validation = compare_split(every, args.validation, args.work / "validation", args.jobs)
    rows = {}
    for run, bench_json in runs.items():
        heldout = heldout_gains(run, bench_json, rounds[run], args.work, args.jobs)
        chosen = max(reversed(rounds[run]), key=lambda r: validation[r])  # reversed: ties go to the later round
        rows[run.name] = {
            "rounds": {Path(r).name: {"validation": validation[r], "heldout": heldout[r]} for r in rounds[run]},
            "selected": Path(chosen).name,
            "selected_heldout": heldout[chosen],
            "last_heldout": heldout[rounds[run][-1]],
            "best_heldout": max(heldout.values()),
        }
    mean = {k: sum(r[k] for r in rows.values()) / len(rows) for k in ("selected_heldout", "last_heldout")}
    print("| run | validation gain per round | selected | held-out gain: selected | last round |")
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        per_round = ", ".join(f"{v['validation']:+.3f}" for v in row["rounds"].values())
        gains = f"{row['selected_heldout']:+.3f} | {row['last_heldout']:+.3f}"
        print(f"| {name} | {per_round} | {row['selected']} | {gains} |")
    ratio = mean["selected_heldout"] / mean["last_heldout"] if mean["last_heldout"] else float("nan")
    print(
        f"mean held-out gain: selected {mean['selected_heldout']:+.3f}, last {mean['last_heldout']:+.3f}; {ratio:.2f}x"
    )
    result = {
        "validation": str(args.validation),
        "budget_minutes": args.budget,
        "runs": rows,
        "mean_heldout_gain": mean,
        "selected_over_last": ratio,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()

"""Does averaging a run's round adapters beat its last round? (weight averaging across rounds, post hoc)

For each `scripts/bench_learning.py` run given, the adapters of the rounds finished within ``--budget`` minutes are
averaged with peft's ``add_weighted_adapter`` (equal weights): all rounds, exactly (``cat``: the rank grows to
r x rounds) and truncated back to the run's rank (``svd``), and the last two rounds (``svd``). ``tao compare`` then
answers ``--prompts`` greedily with the base, each run's last round and each average, scored by the instruction
checker (prompt-level strict). Prints each variant's mean paired gain over the base across the runs and its ratio
to the last round's, and writes JSON.

    python scripts/bench_average.py runs/bench-learning-guarded runs/bench-learning-rep runs/bench-learning-s2 \
        --prompts runs/bench-quality/ifeval/heldout.jsonl --out docs/results/bench_average.json

Choose the averaging on prompts that are neither the runs' training nor their held-out prompts (the example uses
`bench_quality`'s validation half, which `bench_learning` keeps out of both).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {"all-cat": (None, "cat"), "all-svd": (None, "svd"), "last2-svd": (2, "svd")}  # rounds kept, combination


def rounds_within(work: Path, budget: float) -> list[Path]:
    done = [r["round"] for r in json.loads((work / "tao-rounds.json").read_text()) if r["minutes"] <= budget]
    return [work / "tao-run" / f"round-{r:04d}" / "adapter" for r in done]


def write_result(out: Path, result: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


def average(base: Path, adapters: list[Path], out: Path, combination: str) -> None:
    """Equal-weight average of ``adapters`` as one peft adapter in ``out`` (built beside it, then renamed)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, use_safetensors=True)
    peft = PeftModel.from_pretrained(model, str(adapters[0]), adapter_name="r0")
    for i, path in enumerate(adapters[1:], 1):
        peft.load_adapter(str(path), adapter_name=f"r{i}")
    names = [f"r{i}" for i in range(len(adapters))]
    peft.add_weighted_adapter(names, [1 / len(names)] * len(names), "mean", combination_type=combination)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    peft.save_pretrained(str(tmp), selected_adapters=["mean"])
    (tmp / "mean").rename(out)  # peft saves a non-default adapter in a subdirectory named after it
    shutil.rmtree(tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="bench_learning --work directories")
    parser.add_argument("--budget", type=float, default=60, help="minutes: the rounds finished within it")
    parser.add_argument("--prompts", type=Path, required=True, help="items with IFEval categories (JSONL)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-average")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "bench_average.json")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tao.console import Console
    from tao.embedded import embedded_model_dir

    base = embedded_model_dir(Console(quiet=True))
    started = time.perf_counter()
    specs: dict[str, dict[str, str]] = {}
    for run in args.runs:
        adapters = rounds_within(run, args.budget)
        specs[run.name] = {"last": str(adapters[-1].parent)}
        for variant, (keep, combination) in VARIANTS.items():
            out = args.work / f"{run.name}-{variant}"
            if not out.is_dir():
                average(base, adapters[-keep:] if keep else adapters, out, combination)
            specs[run.name][variant] = str(out)
    models = ["base"] + [s for run in specs.values() for s in run.values()]
    report_path = args.work / "compare" / "report.json"
    if not report_path.is_file() or set(models) - set(json.loads(report_path.read_text())["models"]):
        command = [sys.executable, "-m", "tao.cli", "compare", *models, "--prompts", str(args.prompts)]
        command += ["--by", "rule:all_instructions", "--out", str(args.work / "compare"), "--quiet"]
        subprocess.run(command, check=True, cwd=ROOT)
    report = json.loads(report_path.read_text())
    gains = {
        variant: {run: report["differences"][s[variant]]["mean"] for run, s in specs.items()}
        for variant in ("last", *VARIANTS)
    }
    mean = {variant: sum(g.values()) / len(g) for variant, g in gains.items()}
    print(f"base {report['models']['base']['mean']:.3f} on {report['items']} items of {args.prompts}")
    print("| model | " + " | ".join(specs) + " | mean gain | vs last round |")
    for variant, g in gains.items():
        ratio = f"{mean[variant] / mean['last']:.2f}x" if mean["last"] else "-"
        print(f"| {variant} | " + " | ".join(f"{v:+.3f}" for v in g.values()) + f" | {mean[variant]:+.3f} | {ratio} |")
    result = {
        "prompts": str(args.prompts),
        "items": report["items"],
        "budget_minutes": args.budget,
        "base": report["models"]["base"],
        "models": specs,
        "gain_vs_base": gains,
        "mean_gain": mean,
        "wins_vs_base": {s: report["wins"][s] for run in specs.values() for s in run.values()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()

"""Recipe: a reward model for instruction following, bootstrapped from a checker, on IFEval (no hand labels).

1. `tao reward label`: the base model's explored candidates for IFEval training prompts (a finished `tao run`
   round) become preference pairs wherever the instruction checker (`rule:instructions`, the share of the
   prompt's verifiable instructions followed) separates two answers by at least the margin.
2. `tao reward train`: trl's RewardTrainer with LoRA on SmolLM2-135M-Instruct; its held-out pairs are on prompts
   it did not train on.
3. `tao reward eval`: on candidates for other IFEval prompts (rounds of another run, none of whose prompts the
   reward model saw): pairwise accuracy on checker-labelled pairs, and rank agreement with the checker.

    python scripts/recipe_reward_ifeval.py --train-round RUN/round-0001 --unseen RUN2 [--work runs/recipe-rm]

Writes docs/results/reward_ifeval.json and prints the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def tao(*args: object) -> str:
    from click.testing import CliRunner

    from tao.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exit_code != 0:
        raise SystemExit(f"tao {' '.join(map(str, args))} failed:\n{result.output}")
    return result.output


def unseen_candidates(run: Path, seen: set[str], out: Path) -> tuple[Path, Path, int]:
    """Candidates (and their prompts) of every round of ``run`` whose prompt is not in ``seen``."""
    rows, prompts = [], {}
    for round_dir in sorted(run.glob("round-*")):
        plan = json.loads((round_dir / "plan.json").read_text())
        prompts.update({p["id"]: p for p in plan["prompts"] if p["id"] not in seen})
        for line in (round_dir / "candidates.jsonl").read_text().splitlines():
            row = json.loads(line)
            if row["prompt_id"] not in seen:
                rows.append(row)
    out.mkdir(parents=True, exist_ok=True)
    (out / "unseen-candidates.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "unseen-prompts.jsonl").write_text(
        "".join(json.dumps({"id": p["id"], "messages": p["messages"]}) + "\n" for p in prompts.values())
    )
    return out / "unseen-candidates.jsonl", out / "unseen-prompts.jsonl", len(prompts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-round", type=Path, required=True, help="a finished round of the base model")
    parser.add_argument("--unseen", type=Path, required=True, help="a run whose rounds give candidates to test on")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "recipe-rm")
    parser.add_argument("--margin", type=float, default=0.5)
    parser.add_argument("--per-prompt", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "reward_ifeval.json")
    parser.add_argument("--set", dest="extra", action="append", default=[], help="config override, repeatable")
    args = parser.parse_args()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    sets = [x for s in args.extra for x in ("--set", s)]
    times = {}

    started = time.perf_counter()
    labelled = tao(
        "reward",
        "label",
        "--rollouts",
        args.train_round / "candidates.jsonl",
        "--by",
        "rule:instructions",
        "--margin",
        args.margin,
        "--per-prompt",
        args.per_prompt,
        "--out",
        work / "pairs.jsonl",
    )
    times["label"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    tao("reward", "train", "--pairs", work / "pairs.jsonl", "--out", work / "rm", "--quiet", *sets)
    times["train"] = round(time.perf_counter() - started, 1)
    manifest = json.loads((work / "rm" / "manifest.json").read_text())

    seen = {json.loads(line)["prompt_id"] for line in (work / "pairs.jsonl").read_text().splitlines()}
    seen |= {p["id"] for p in json.loads((args.train_round / "plan.json").read_text())["prompts"]}
    candidates, prompts, n_unseen = unseen_candidates(args.unseen, seen, work)
    tao(
        "reward",
        "label",
        "--rollouts",
        candidates,
        "--prompts",
        prompts,
        "--by",
        "rule:instructions",
        "--margin",
        args.margin,
        "--per-prompt",
        args.per_prompt,
        "--out",
        work / "unseen-pairs.jsonl",
    )
    started = time.perf_counter()
    evaluated = json.loads(
        tao(
            "reward",
            "eval",
            "--model",
            work / "rm" / "model",
            "--pairs",
            work / "unseen-pairs.jsonl",
            "--verifier",
            "rule:instructions",
            *sets,
        )
    )
    times["eval"] = round(time.perf_counter() - started, 1)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "model": "SmolLM2-135M-Instruct (embedded), LoRA r16 all-linear + scoring head, merged",
        "labelled_by": "rule:instructions",
        "margin": args.margin,
        "pairs_per_prompt": args.per_prompt,
        "training_pairs": manifest["data"],
        "label_output": labelled.strip(),
        "train": manifest["budget"],
        "held_out_pairwise_accuracy": manifest["evaluation"]["pairwise_accuracy"],
        "unseen_prompts": n_unseen,
        "unseen": evaluated,
        "seconds": times,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    acc, unseen = result["held_out_pairwise_accuracy"], evaluated["accuracy"]
    print(f"pairs: {manifest['data']}")
    print(f"held-out pairwise accuracy: {acc['mean']:.3f} [{acc['low']:.3f}, {acc['high']:.3f}] (n={acc['n']})")
    print(
        f"unseen prompts ({n_unseen}): pairwise accuracy {unseen['mean']:.3f} [{unseen['low']:.3f}, "
        f"{unseen['high']:.3f}] (n={unseen['n']}); Spearman with the checker "
        f"{evaluated['verifier']['spearman']} over {evaluated['verifier']['answers_scored']} answers"
    )
    print(f"times: {times}; wrote {args.out}")


if __name__ == "__main__":
    main()

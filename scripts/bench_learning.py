"""Learning within a wall-clock budget, judged by IFEval's own checker on prompts the run never saw.

One seed: two arms run on all 412 IFEval prompts as a user gives them (IFEval's labels ride along as metadata; the
training reward reads only the text), each holding out its seeded share (`data.holdout`, the same split for both:
same file, same seed), for `--minutes`:

- tao: `tao run --config configs/small-model-checker.yaml` (the preset, unchanged);
- rft: the same run with `update.method=rft`: fine-tuning on the best answer its own exploration found in each group
  (rejection sampling), the baseline practitioners try first, at the same wall clock.

Then `tao compare base TAO RFT --prompts <the TAO run> --by ifeval` answers every held-out prompt greedily, and the
script reports, per arm: IFEval prompt-level strict (the yardstick) with its paired interval against the base,
instruction-level strict, the training reward on the same answers (beside the yardstick, never instead of it), and
tao minus rft, paired per prompt.

    python scripts/bench_learning.py --seed 5 [--minutes 60] [--threads 1] [--work runs/bench-learning]
    python scripts/bench_learning.py --seed 5 --arms rft --work DIR   # DIR/tao ran before: add the RFT arm
    python scripts/bench_learning.py --summarize docs/results/learning/seed-5.json ... --out docs/results/learning.json

Choosing a setting: `--validation` leaves the seed's held-out prompts out of the file altogether, so the arms' own
held-out share of the rest is a validation split; `--arms tao candidate --candidate SET ...` runs the preset beside
the preset with the overrides SET, and the result adds candidate minus tao, paired per prompt. One validation seed
moves by several points on its own: run two or three seeds and `--summarize` their files (it refuses to mix
validation and held-out results). The held-out prompts are then only ever used for the setting chosen.

With --threads 1 (the default) the arms run side by side, each pinned to its own core with one torch thread; with
more, one after the other, each on the whole machine. The per-round evaluation of `tao run` is off in both arms
(`eval.max_prompts=0`): the comparison afterwards evaluates every held-out prompt instead. `ran.json` in the work
directory says how each arm ran; a rerun with it present evaluates the arms it names without running them again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_data import IFEVAL  # noqa: E402

from reward.scorer import RewardSet  # noqa: E402
from tao import evaluation  # noqa: E402
from tao.commands.compare import held_out_items  # noqa: E402
from tao.core.config_file import load_config  # noqa: E402
from tao.core.types import Answer, Message, Prompt  # noqa: E402
from tao.run.paths import RunPaths  # noqa: E402
from tao.run.pool import Pool  # noqa: E402
from tao.run.registry import finished_rounds  # noqa: E402

PRESET = ROOT / "configs" / "small-model-checker.yaml"
ARMS = {
    "tao": [],
    "rft": ["update.method=rft"],  # the preset's sft section sets the baseline's rate
    "candidate": [],  # a setting under trial: --candidate's overrides
}
DIFFERENCES = {"tao_minus_rft": ("tao", "rft"), "candidate_minus_tao": ("candidate", "tao")}
RESAMPLES = 10_000


def items_file(work: Path, validation_of: int | None) -> Path:
    """All IFEval prompts as a prompts file: the text, with IFEval's labels as metadata. With ``validation_of``,
    without the prompts a run on the whole file with that seed holds out."""
    path = work / "ifeval.jsonl"
    rows = [json.loads(line) for line in IFEVAL.read_text(encoding="utf-8").splitlines() if line.strip()]
    keep = ("prompt", "instruction_id_list", "kwargs")
    lines = {str(r["key"]): json.dumps({"id": str(r["key"]), **{k: r[k] for k in keep}}) + "\n" for r in rows}
    path.write_text("".join(lines.values()))
    if validation_of is not None:
        held_out = held_out_ids(path, validation_of)
        path.write_text("".join(line for key, line in lines.items() if key not in held_out))
    return path


def held_out_ids(path: Path, seed: int) -> set[str]:
    """The prompt ids a run on ``path`` with ``seed`` holds out, as its pool assigns them (a scratch pool, never
    settled into a run, removed on close)."""
    pool = Pool(path.parent / "holdout" / "pool.sqlite")
    try:
        with pool.ingest(path, load_config(PRESET).data.holdout, seed):
            pass
        return {p.id for p in pool.eval_prompts(-1, lambda p: True)}
    finally:
        pool.close()


def arm_command(arm: str, args: argparse.Namespace, work: Path) -> list[str]:
    sets = [f"run.seed={args.seed}", "eval.max_prompts=0", f"run.threads={args.threads}", *arm_settings(args)[arm]]
    sets += args.set
    command = [sys.executable, "-m", "tao.cli", "run", "--prompts", str(work / "ifeval.jsonl"), "--quiet"]
    command += ["--config", str(PRESET), "--run-dir", str(work / arm), "--model", args.model]
    command += ["--rounds", "1000", "--minutes", f"{args.minutes:g}"]
    return command + [x for s in sets for x in ("--set", s)]


def arm_settings(args: argparse.Namespace) -> dict[str, list[str]]:
    return {**ARMS, "candidate": args.candidate}


def run_arms(args: argparse.Namespace, work: Path) -> dict[str, str]:
    """The arms asked for: side by side, each pinned to a core, with one thread; else one after the other. Another
    arm that ran before in ``work`` is evaluated with them."""
    ran = {
        arm: "earlier, in the same work directory"
        for arm in ARMS
        if arm not in args.arms and finished_rounds(RunPaths(work / arm))
    }
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    if args.threads > 1:
        for arm in args.arms:
            subprocess.run(arm_command(arm, args, work), env=env, cwd=ROOT, check=True)
        return ran | dict.fromkeys(args.arms, f"alone, {args.threads} torch threads on {os.cpu_count()} cores")
    running = [
        subprocess.Popen(["taskset", "-c", str(core), *arm_command(arm, args, work)], env=env, cwd=ROOT)
        for core, arm in zip(args.cores, args.arms, strict=False)  # main() checks there are cores enough
    ]
    if any([p.wait() for p in running]):  # every arm waited for: one failing leaves the other to finish
        raise SystemExit("an arm failed; see its output above (a rerun with --arms runs it alone)")
    return ran | dict.fromkeys(args.arms, "side by side, 1 torch thread pinned to its own core")


def compare(args: argparse.Namespace, work: Path, arms: list[str]) -> Path:
    """Greedy answers of the base and the arms' last rounds on the TAO run's held-out prompts, by the yardstick."""
    out = work / "compare"
    if not (out / "report.json").is_file():
        command = [sys.executable, "-m", "tao.cli", "compare", "base", *(str(work / a) for a in arms)]
        command += ["--prompts", str(work / "tao"), "--by", "ifeval", "--out", str(out), "--quiet"]
        command += ["--base", args.model, "--config", str(PRESET)]
        subprocess.run(command, check=True, cwd=ROOT)
    return out


def rescored(answers: list[Answer], prompts: list[Prompt], rewards: RewardSet) -> dict[str, float | None]:
    return {a.prompt_id: a.score for a in evaluation.rescore(answers, prompts, rewards)}


def evaluate(args: argparse.Namespace, work: Path, ran: dict[str, str]) -> dict:
    """The arms that ran (a seed run before --arms existed may have the TAO arm alone) against the base."""
    arms = [a for a in ARMS if a in ran]
    if len({frozenset(p.id for p in held_out_items(work / a)) for a in arms}) != 1:
        raise SystemExit("the arms held out different prompts: not the same file and seed")
    out = compare(args, work, arms)
    models = {}
    for items in sorted(out.glob("items-*.jsonl")):
        rows = [json.loads(line) for line in items.read_text().splitlines()]
        label = "base" if rows[0]["model"] == "base" else Path(rows[0]["model"]).name
        models[label] = [Answer.from_row(r) for r in rows]
    by_id = {json.loads(line)["id"]: json.loads(line) for line in (work / "ifeval.jsonl").read_text().splitlines()}
    prompts = [
        Prompt(pid, (Message("user", by_id[pid]["prompt"]),), {k: v for k, v in by_id[pid].items() if k != "prompt"})
        for pid in (a.prompt_id for a in models["base"])
    ]
    preset = load_config(PRESET)
    scorers = {
        "prompt_level": RewardSet(("ifeval",)),
        "instruction_level": RewardSet(("ifeval:instructions",)),
        "training_reward": RewardSet(preset.reward.scorers, gate=preset.reward.gate),
    }
    scored = {
        label: {name: rescored(rows, prompts, s) for name, s in scorers.items()} for label, rows in models.items()
    }
    result = {
        "seed": args.seed,
        "minutes": args.minutes,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores; " + "; ".join(f"{a}: {r}" for a, r in ran.items()),
        "model": "SmolLM2-135M-Instruct (embedded)" if args.model == "default" else args.model,
        "preset": str(PRESET.relative_to(ROOT)),
        "arm_settings": {a: arm_settings(args)[a] for a in arms},
        "split": "validation (the seed's held-out prompts left out)" if args.validation else "held out",
        "heldout_prompts": len(prompts),
        "models": {},
    }
    for label, rows in models.items():
        entry: dict = {"per_prompt": scored[label]}
        for name in scorers:
            mine, base = _rows(scored[label][name]), _rows(scored["base"][name])
            diff = evaluation.paired_difference(base, mine, seed=args.seed) if label != "base" else None
            entry[name] = {
                **asdict(evaluation.bootstrap([a.score for a in mine if a.score is not None], seed=args.seed)),
                "vs_base": asdict(diff) if diff else None,
                "wins_vs_base": evaluation.wins_ties_losses(base, mine) if label != "base" else None,
            }
        words = [len(a.text.split()) for a in rows]
        entry["answers"] = {"mean_words": float(np.mean(words)), "under_10_words": float(np.mean(np.less(words, 10)))}
        if label != "base":
            entry["rounds"] = rounds(work / label)
        result["models"][label] = entry
    for name, (arm, reference) in DIFFERENCES.items():
        if arm in arms and reference in arms:
            mine, theirs = (_rows(scored[a]["prompt_level"]) for a in (arm, reference))
            diff = evaluation.paired_difference(theirs, mine, seed=args.seed)
            result[name] = {
                "prompt_level": asdict(diff) if diff else None,
                "wins": evaluation.wins_ties_losses(theirs, mine),
            }
    return result


def _rows(scores: dict[str, float | None]) -> list[Answer]:
    return [Answer(p, "", True, s, {}, "") for p, s in scores.items()]


def rounds(run_dir: Path) -> list[dict]:
    """Each finished round: when it finished (minutes from the run's start) and what its update did."""
    done = finished_rounds(RunPaths(run_dir))
    if not done:
        return []
    started = json.loads((run_dir / "run.json").read_text())["created"]
    out = []
    for rp, manifest in done:
        metrics = json.loads(rp.metrics.read_text())
        update = metrics["update"]
        out.append(
            {
                "round": rp.index,
                "minutes": round(_minutes(started, manifest["created"]), 1),
                "prompts": metrics["score"]["groups"],
                "groups_trained": update["groups_trained"],
                "steps": update["steps"],
            }
        )
    return out


def _minutes(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() / 60


def seeds_summary(files: list[Path]) -> dict:
    """Over seeds: each arm's mean gain over the base, and each of ``DIFFERENCES`` (tao minus rft, candidate minus
    tao), with two bootstrap intervals: over the compared prompts of each seed (the seeds fixed), and over seeds and
    prompts (a new seed). Each over the seeds that ran it (``seeds`` in each entry)."""
    results = [json.loads(f.read_text()) for f in files]
    if len({r.get("split", "held out") for r in results}) > 1:  # files from before "split" existed are held out
        raise SystemExit("these files mix validation and held-out results: summarize each split on its own")
    rng = np.random.default_rng(0)
    out: dict = {"files": [str(f) for f in files], "seeds": [r["seed"] for r in results], "arms": {}}
    out["split"] = results[0].get("split", "held out")
    for measure in ("prompt_level", "instruction_level", "training_reward"):
        for arm in ARMS:
            having = [r for r in results if arm in r["models"]]
            if having:
                gains = [_gains(r, measure, arm, "base") for r in having]
                out["arms"].setdefault(arm, {})[measure] = _two_intervals(gains, [r["seed"] for r in having], rng)
        for name, (arm, reference) in DIFFERENCES.items():
            having = [r for r in results if name in r]
            if having:
                gains = [_gains(r, measure, arm, reference) for r in having]
                out.setdefault(name, {})[measure] = _two_intervals(gains, [r["seed"] for r in having], rng)
    return out


def _gains(result: dict, measure: str, arm: str, reference: str) -> np.ndarray:
    scores = {label: _per_prompt(result, label, measure) for label in (arm, reference)}
    ids = sorted(p for p in scores[reference] if scores[reference][p] is not None and scores[arm][p] is not None)
    return np.array([scores[arm][p] - scores[reference][p] for p in ids])


def _per_prompt(result: dict, label: str, measure: str) -> dict[str, float | None]:
    return result["models"][label]["per_prompt"][measure]


def _two_intervals(gains: list[np.ndarray], seeds: list[int], rng: np.random.Generator) -> dict:
    per_seed = [float(g.mean()) for g in gains]
    by_prompts, by_both = [], []
    for _ in range(RESAMPLES // 10):
        by_prompts.append(np.mean([g[rng.integers(0, g.size, g.size)].mean() for g in gains]))
        chosen = [gains[i] for i in rng.integers(0, len(gains), len(gains))]
        by_both.append(np.mean([g[rng.integers(0, g.size, g.size)].mean() for g in chosen]))
    return {
        "seeds": seeds,
        "per_seed": [round(x, 4) for x in per_seed],
        "mean": round(float(np.mean(per_seed)), 4),
        "prompts_interval": [round(float(x), 4) for x in np.percentile(by_prompts, [2.5, 97.5])],
        "seeds_and_prompts_interval": [round(float(x), 4) for x in np.percentile(by_both, [2.5, 97.5])],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per arm; above 1 the arms run in turn")
    parser.add_argument("--model", default="default", help="base model (a tiny one checks the script end to end)")
    parser.add_argument(
        "--arms",
        nargs="+",
        choices=ARMS,
        default=["tao", "rft"],
        help="arms to run [tao rft]; another arm that ran in --work before is evaluated with them (an arm added to a"
        " seed run before)",
    )
    parser.add_argument("--cores", type=int, nargs="+", default=[0, 1], help="with --threads 1: the arms' cores [0 1]")
    parser.add_argument("--set", action="append", default=[], help="extra override for every arm, repeatable")
    parser.add_argument("--candidate", nargs="+", default=[], help="the candidate arm's overrides of the preset")
    parser.add_argument(
        "--validation", action="store_true", help="leave the seed's held-out prompts out: compare on validation ones"
    )
    parser.add_argument("--work", type=Path, default=None, help="[runs/bench-learning/seed-N]")
    parser.add_argument("--out", type=Path, default=None, help="[docs/results/learning/seed-N.json]")
    parser.add_argument("--summarize", type=Path, nargs="+", help="seed result files: write their summary to --out")
    args = parser.parse_args()
    if args.threads == 1 and len(args.cores) < len(args.arms):
        parser.error(f"--cores names {len(args.cores)} cores for {len(args.arms)} arms")
    if args.summarize:
        report = seeds_summary(args.summarize)
        out = args.out or ROOT / "docs" / "results" / "learning.json"
        out.write_text(json.dumps(report, indent=2) + "\n")
        print_summary(report)
        return
    work = args.work or ROOT / "runs" / "bench-learning" / f"seed-{args.seed}"
    work.mkdir(parents=True, exist_ok=True)
    if "candidate" in args.arms and not args.candidate:
        parser.error("the candidate arm needs --candidate SET ...")
    items_file(work, args.seed if args.validation else None)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    started = time.perf_counter()
    ran_file = work / "ran.json"
    if not ran_file.is_file():
        ran_file.write_text(json.dumps(run_arms(args, work)) + "\n")
    result = evaluate(args, work, json.loads(ran_file.read_text()))
    result["seconds"] = round(time.perf_counter() - started)
    out = args.out or ROOT / "docs" / "results" / "learning" / f"seed-{args.seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_seed(result)


def print_seed(result: dict) -> None:
    print(f"seed {result['seed']}, {result['heldout_prompts']} held-out prompts, {result['minutes']:g} minutes")
    print("| model | prompt-level [95% CI] | vs base | instruction-level | vs base | training reward | words |")
    print("|---|---|---|---|---|---|---|")
    for label, m in result["models"].items():
        cells = []
        for name in ("prompt_level", "instruction_level"):
            d = m[name]["vs_base"]
            cells += [f"{m[name]['mean']:.3f}", f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" if d else "-"]
        print(
            f"| {label} | {' | '.join(cells)} | {m['training_reward']['mean']:.3f} | {m['answers']['mean_words']:.0f} |"
        )
    for name in DIFFERENCES:
        if name in result:
            d = result[name]["prompt_level"]
            print(f"{name}, prompt level: {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]")


def print_summary(report: dict) -> None:
    print(f"seeds {report['seeds']}: gains in points")
    rows = [(f"{arm} vs base", m) for arm, m in report["arms"].items()]
    rows += [(f"{arm} - {reference}", report[name]) for name, (arm, reference) in DIFFERENCES.items() if name in report]
    for name, measures in rows:
        for measure, s in measures.items():
            per_seed = ", ".join(f"{seed}: {100 * x:+.1f}" for seed, x in zip(s["seeds"], s["per_seed"], strict=True))
            lo, hi = (100 * x for x in s["seeds_and_prompts_interval"])
            plo, phi = (100 * x for x in s["prompts_interval"])
            print(
                f"{name:>12} {measure:>17}: {100 * s['mean']:+.1f} ({per_seed}); prompts [{plo:+.1f}, {phi:+.1f}], "
                f"seeds and prompts [{lo:+.1f}, {hi:+.1f}]"
            )


if __name__ == "__main__":
    main()

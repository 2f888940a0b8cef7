"""Learning within a wall-clock budget: `tao run` vs a plain trl GRPO script, side by side on IFEval.

Both arms start from the same model with the same LoRA shape, train on the same IFEval training prompts with
the same reward (tao's default scorers: instruction checker + 0.25 finished + 0.25 repetition), run at the same
time, each pinned to its own CPU core with one torch thread (or, with --threads N, one after the other with N
threads each: the whole machine, as `tao run` uses it), and stop at the largest budget. The plain arm is
trl's GRPOTrainer with trl's defaults except what a CPU requires (bf16 off) and the task's answer budget (128
new tokens); it saves its adapter as it passes each budget. The TAO arm is one `tao run --minutes <largest
budget>`; its model at a budget is the last round finished within it. Afterwards `tao compare` answers the held-out
prompts greedily with every model, scored by the instruction checker (prompt-level strict, bootstrap
intervals, paired against the base).

Held-out prompts: IFEval prompts the checker handles, minus every prompt used to choose settings (the 12 of
scripts/bench_explore.py, and the 96 of scripts/bench_quality.py, whose split trained and validated
scripts/sweep_update.py's variants); the training prompts are all the others.

    python scripts/bench_learning.py [--budgets 15,30,60] [--heldout 64] [--work runs/bench-learning] [--threads 1]

Writes docs/results/bench_learning.json and .png (held-out accuracy against minutes) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_quality import EXPLORE_BENCH_PROMPTS, GUIDES, ifeval_items, instruction_level  # noqa: E402

SCORERS = ("rule:instructions", "rule:finished=0.25", "rule:repetition=0.25")
# TAO's settings, chosen with scripts/sweep_update.py on bench_quality's prompts (never these held-out ones);
# the reasons are in docs/RESULTS.md.
TAO_SETTINGS = (
    "data.holdout=0",
    "data.prompts_per_round=24",
    "eval.max_prompts=0",
    "rollout.strategies=[sample=2, think, guide:{guides}, best_of:2]",
    "update.learning_rate=1e-3",
    "update.beta=0",
    "update.group_size=4",
    "run.threads={threads}",
)


def split(items: list[dict], heldout: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, held-out): held-out prompts are never among those any settings were chosen on."""
    chosen_on = {i["id"] for i in items[:EXPLORE_BENCH_PROMPTS]}
    quality = list(items)
    random.Random(0).shuffle(quality)  # scripts/bench_quality.py's split (seed 0): its 48 + 48 prompts
    chosen_on |= {i["id"] for i in quality[:48]}
    chosen_on |= {i["id"] for i in [i for i in quality[48:] if i["id"] not in chosen_on][:48]}
    rest = [i for i in items if i["id"] not in chosen_on]
    random.Random(seed).shuffle(rest)
    held = {i["id"] for i in rest[:heldout]}
    return [i for i in items if i["id"] not in held], [i for i in items if i["id"] in held]


def write_items(path: Path, items: list[dict], keep: tuple[str, ...]) -> Path:
    path.write_text("".join(json.dumps({k: v for k, v in i.items() if k in keep}) + "\n" for i in items))
    return path


def plain_arm(train_file: Path, out: Path, budgets: list[float], model: str, seed: int, threads: int) -> None:
    """trl's GRPOTrainer with its defaults; saves the adapter at the first step end past each budget."""
    started = time.perf_counter()
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from reward.scorer import RewardSet
    from rollouts.generator import Candidate
    from tao.config import ModelConfig
    from tao.console import Console
    from tao.model import resolve_base
    from tao.prompts import Message, Prompt

    torch.set_num_threads(threads)
    base = resolve_base(ModelConfig(name=model), Console(quiet=True))
    rewards = RewardSet(SCORERS, False)
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    eos = tokenizer.eos_token_id
    rows = [json.loads(line) for line in train_file.read_text().splitlines()]
    by_text = {r["prompt"]: r["id"] for r in rows}

    def reward(prompts: list, completions: list, completion_ids: list, **kwargs: object) -> list:
        asked = [Prompt(by_text[p[-1]["content"]], (Message("user", p[-1]["content"]),)) for p in prompts]
        answers = [
            Candidate(a.id, 0, c[-1]["content"], tuple(ids), eos in ids or len(ids) < 128, "sample")
            for a, c, ids in zip(asked, completions, completion_ids, strict=True)
        ]
        return rewards.totals(asked, answers)

    class Budgets(TrainerCallback):
        def __init__(self) -> None:
            self.left = sorted(budgets)
            self.log: list[dict] = []

        def on_step_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001, ANN201
            minutes = (time.perf_counter() - started) / 60
            while self.left and minutes >= self.left[0]:
                mark = self.left.pop(0)
                model.save_pretrained(out / f"min-{mark:g}", selected_adapters=["default"])
                self.log.append({"budget": mark, "minutes": round(minutes, 2), "step": state.global_step})
                (out / "checkpoints.json").write_text(json.dumps(self.log, indent=2) + "\n")
            control.should_training_stop = not self.left
            return control

    policy = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.float32)
    args = GRPOConfig(
        output_dir=str(out / "scratch"),
        bf16=False,  # CPU: trl's default bf16 fails
        use_cpu=True,
        max_completion_length=128,  # the task's answer budget, as tao's
        seed=seed,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(
        model=policy,
        reward_funcs=reward,
        args=args,
        train_dataset=Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}]} for r in rows]),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"),
        callbacks=[Budgets()],
    )
    trainer.remove_callback(PrinterCallback)  # trl prints every step's figures; they go to log.json
    trainer.train()
    (out / "log.json").write_text(json.dumps(trainer.state.log_history, indent=2) + "\n")


def tao_arm(
    train_file: Path, run_dir: Path, budgets: list[float], model: str, sets: list[str], scorers: tuple[str, ...]
) -> None:
    """One `tao run --minutes <largest budget>`, as a user would run it (the last round takes the prompts that fit);
    records when each round finished: its manifest's time, counted from the arm's start."""
    from tao.paths import RunPaths
    from tao.registry import finished_rounds

    started = datetime.now(timezone.utc)
    command = [sys.executable, "-m", "tao.cli", "run", "--prompts", str(train_file), "--run-dir", str(run_dir)]
    command += ["--quiet", "--model", model, "--rounds", "1000", "--minutes", f"{max(budgets):g}"]
    command += [x for r in scorers for x in ("--reward", r)] + [x for s in sets for x in ("--set", s)]
    subprocess.run(command, check=True, cwd=ROOT)
    log = [
        {"round": rp.index, "minutes": round((datetime.fromisoformat(m["created"]) - started).total_seconds() / 60, 2)}
        for rp, m in finished_rounds(RunPaths(run_dir))
    ]
    (run_dir.parent / "tao-rounds.json").write_text(json.dumps(log, indent=2) + "\n")


def models_at(budgets: list[float], work: Path) -> dict[str, dict[float, dict]]:
    """Per arm and budget: the model to evaluate ('base' when nothing finished yet) and when it was made."""
    plain = json.loads((work / "plain" / "checkpoints.json").read_text()) if (work / "plain").is_dir() else []
    rounds = json.loads((work / "tao-rounds.json").read_text())
    out: dict[str, dict[float, dict]] = {"plain": {}, "tao": {}}
    for b in budgets:
        mark = next((c for c in plain if c["budget"] == b), None)
        out["plain"][b] = {"spec": str(work / "plain" / f"min-{b:g}"), **mark} if mark else {"spec": "base"}
        done = [r for r in rounds if r["minutes"] <= b]
        round_dir = work / "tao-run" / f"round-{done[-1]['round']:04d}" if done else None
        out["tao"][b] = {"spec": str(round_dir), **done[-1]} if done else {"spec": "base", "minutes": 0}
    return out


def answer_shape(texts: dict[str, str], base: dict[str, str]) -> dict:
    """What the held-out answers look like, next to the base model's: a model gaming the checker with
    content-free answers ('<<title>>', '```') scores well on it, and shows here."""
    words = [len(t.split()) for t in texts.values()]
    return {
        "mean_words": sum(words) / len(words),
        "under_10_words": sum(w < 10 for w in words) / len(words),
        "unchanged_vs_base": sum(texts[k] == base.get(k) for k in texts) / len(texts),
    }


def tao_rounds(work: Path) -> list[dict]:
    """When each round finished, and what its update did (groups trained and skipped, steps, KL)."""
    out = []
    for r in json.loads((work / "tao-rounds.json").read_text()):
        metrics = json.loads((work / "tao-run" / f"round-{r['round']:04d}" / "metrics.json").read_text())
        update = {k: v for k, v in metrics["update"].items() if k != "log"}
        out.append({**r, "explore_seconds": metrics["explore"]["seconds"], "update": update})
    return out


OVERLAY_COLORS = ("tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan")


def chart(result: dict, path: Path, overlays: dict[str, dict]) -> None:
    """Held-out accuracy (left) and answer length (right) against training minutes; ``overlays`` add the TAO arm
    of other runs of this script (other settings) as more lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (acc, words) = plt.subplots(1, 2, figsize=(12, 4.5))
    lines = [("plain trl GRPO (defaults)", result, "plain", "tab:orange"), ("tao run", result, "tao", "tab:blue")]
    lines += [
        (label, other, "tao", color) for (label, other), color in zip(overlays.items(), OVERLAY_COLORS, strict=False)
    ]
    for label, res, arm, color in lines:
        points = [(0.0, res["base"])] + [(p["minutes"], p) for p in res["arms"][arm].values() if p["spec"] != "base"]
        xs = [m for m, _ in points]
        err = [[p["mean"] - p["low"] for _, p in points], [p["high"] - p["mean"] for _, p in points]]
        acc.errorbar(xs, [p["mean"] for _, p in points], yerr=err, marker="o", capsize=3, color=color, label=label)
        words.plot(xs, [p["answers"]["mean_words"] for _, p in points], marker="o", color=color, label=label)
    acc.set_xlabel("training wall-clock minutes (one CPU core per arm)")
    acc.set_ylabel("held-out prompt-level strict accuracy (95% CI)")
    acc.set_title(f"IFEval, {result['heldout_items']} held-out prompts, {result['model']}", fontsize=10)
    words.set_xlabel("training wall-clock minutes")
    words.set_ylabel("mean words of the held-out answers")
    words.set_title("what the answers became", fontsize=10)
    for ax in (acc, words):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def evaluate(args: argparse.Namespace, work: Path, heldout: list[dict], budgets: list[float]) -> dict:
    arms = models_at(budgets, work)
    specs = ["base"] + sorted({m["spec"] for a in arms.values() for m in a.values()} - {"base"})
    command = [sys.executable, "-m", "tao.cli", "compare", *specs, "--prompts", str(work / "heldout.jsonl")]
    command += ["--by", "rule:all_instructions", "--out", str(work / "compare"), "--quiet", "--base", args.model]
    started = time.perf_counter()
    done = work / "compare" / "report.json"
    if not done.is_file() or set(specs) - set(json.loads(done.read_text())["models"]):
        subprocess.run(command, check=True, cwd=ROOT)  # an earlier evaluation of the same models is reused
    report = json.loads(done.read_text())
    by_id = {i["id"]: i for i in heldout}
    level, answers, passed = {}, {}, {}
    for f in sorted((work / "compare").glob("items-*.jsonl")):
        rows = [json.loads(line) for line in f.read_text().splitlines()]
        level[rows[0]["model"]] = instruction_level(f, by_id)
        answers[rows[0]["model"]] = {r["prompt_id"]: r["text"] for r in rows}
        passed[rows[0]["model"]] = {r["prompt_id"]: r["score"] for r in rows}  # per prompt, for bench_seeds.py
    shape = {spec: answer_shape(texts, answers["base"]) for spec, texts in answers.items()}
    for arm in arms.values():
        for m in arm.values():
            m.update(report["models"][m["spec"]], instruction_level=level[m["spec"]], answers=shape[m["spec"]])
            m["passed"] = passed[m["spec"]]
            m["vs_base"] = report["differences"].get(m["spec"])
            m["wins_vs_base"] = report["wins"].get(m["spec"])
    plain_log = json.loads((work / "plain" / "log.json").read_text()) if (work / "plain" / "log.json").is_file() else []
    steps = [e for e in plain_log if "frac_reward_zero_std" in e]
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores; {arms_ran(work)}",
        "model": "SmolLM2-135M-Instruct (embedded)" if args.model == "default" else args.model,
        "budgets_minutes": budgets,
        "train_prompts": len(json.loads((work / "split.json").read_text())["train"]),
        "heldout_items": len(heldout),
        "scored_by": "rule:all_instructions (prompt-level strict)",
        "tao_settings": json.loads(settings.read_text())
        if (settings := work / "tao-settings.json").is_file()
        else None,
        "plain_settings": "trl GRPOConfig defaults; bf16=False, use_cpu=True, max_completion_length=128; LoRA r16/32",
        "plain_steps": len(steps),
        "plain_zero_signal_share": sum(e["frac_reward_zero_std"] for e in steps) / len(steps) if steps else None,
        "tao_rounds": tao_rounds(work),
        "base": {
            **report["models"]["base"],
            "instruction_level": level["base"],
            "answers": shape["base"],
            "passed": passed["base"],
            "minutes": 0,
        },
        "arms": {a: {f"{b:g}": m for b, m in v.items()} for a, v in arms.items()},
        "eval_seconds": round(time.perf_counter() - started, 1),
    }


def arms_ran(work: Path) -> str:
    """How the arms ran, as each recorded it when it started."""
    ran = {a: json.loads(f.read_text()) for a in ("plain", "tao") if (f := work / f"machine-{a}.json").is_file()}
    if not ran:
        return "how the arms ran was not recorded"
    return "; ".join(f"{a} arm: {m['threads']} torch thread(s) on {m['cores']} core(s)" for a, m in ran.items())


def record_arm(work: Path, arm: str, threads: int) -> None:
    """What this arm runs with: its torch threads and the cores it may use (one when pinned)."""
    (work / f"machine-{arm}.json").write_text(json.dumps({"threads": threads, "cores": len(os.sched_getaffinity(0))}))


def run_arms(args: argparse.Namespace, work: Path) -> None:
    """Both arms as subprocesses: with one thread each, side by side, each pinned to its own core; with more,
    one after the other (each on the whole machine for the budget)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    me = [sys.executable, __file__, "--budgets", args.budgets, "--heldout", str(args.heldout), "--seed", str(args.seed)]
    me += ["--work", str(work), "--model", args.model, "--threads", str(args.threads)]
    me += [*[x for s in args.extra for x in ("--set", s)], "--tao-scorers", args.tao_scorers]
    if args.threads > 1:
        for arm in ("plain", "tao"):
            subprocess.run([*me, "--arm", arm], env=env, cwd=ROOT, check=True)
        return
    arms = [
        subprocess.Popen(["taskset", "-c", str(core), *me, "--arm", arm], env=env, cwd=ROOT)
        for core, arm in enumerate(("plain", "tao"))
    ]
    if any(p.wait() for p in arms):
        raise SystemExit("an arm failed; see its output above")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="15,30,60", help="minutes, comma-separated")
    parser.add_argument("--heldout", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per arm; above 1 the arms run in turn")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-learning")
    parser.add_argument("--model", default="default", help="base model (a tiny one checks the script end to end)")
    parser.add_argument("--set", dest="extra", action="append", default=[], help="extra tao override, repeatable")
    parser.add_argument("--tao-scorers", default=",".join(SCORERS), help="the TAO arm's reward (plain keeps SCORERS)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "bench_learning.json")
    parser.add_argument("--overlay", action="append", default=[], metavar="LABEL=JSON",
                        help="add another run's TAO arm (this script's JSON output) to the chart")  # fmt: skip
    parser.add_argument("--arm", choices=("all", "plain", "tao", "eval"), default="all", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    budgets = sorted(float(b) for b in args.budgets.split(","))
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    train, heldout = split(
        ifeval_items(ROOT.parent / "shared" / "data" / "ifeval" / "prompts.jsonl"), args.heldout, args.seed
    )
    train_file = write_items(work / "train.jsonl", train, ("id", "prompt"))
    write_items(work / "heldout.jsonl", heldout, ("id", "prompt", "category"))
    (work / "split.json").write_text(
        json.dumps({"train": [i["id"] for i in train], "heldout": [i["id"] for i in heldout]}) + "\n"
    )
    guides = work / "guides.txt"
    guides.write_text("\n---\n".join(GUIDES) + "\n")
    sets = [s.format(guides=guides, threads=args.threads) for s in TAO_SETTINGS] + args.extra

    if args.arm in ("plain", "tao"):
        record_arm(work, args.arm, args.threads)
    if args.arm == "plain":
        return plain_arm(train_file, work / "plain", budgets, args.model, args.seed, args.threads)
    if args.arm == "tao":  # the settings it runs with; the evaluation reports these, not its own call's
        settings = {"sets": sets, "scorers": args.tao_scorers.split(",")}
        (work / "tao-settings.json").write_text(json.dumps(settings) + "\n")
        return tao_arm(train_file, work / "tao-run", budgets, args.model, sets, tuple(args.tao_scorers.split(",")))
    if args.arm == "all":
        run_arms(args, work)
    result = evaluate(args, work, heldout, budgets)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    overlays = {o.split("=", 1)[0]: json.loads(Path(o.split("=", 1)[1]).read_text()) for o in args.overlay}
    if len(overlays) > len(OVERLAY_COLORS):
        raise SystemExit(f"at most {len(OVERLAY_COLORS)} --overlay runs")
    chart(result, args.out.with_suffix(".png"), overlays)
    base = result["base"]
    interval = f"{base['mean']:.3f} [{base['low']:.3f}, {base['high']:.3f}]"
    print(f"base: {interval}, instruction-level {base['instruction_level']:.3f}")
    print("| arm | budget | made at (min) | prompt-level [95% CI] | vs base, paired [95% CI] | instr-level | words |")
    for arm, points in result["arms"].items():
        for b, p in points.items():
            d = p["vs_base"]
            vs = f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" if d else "-"
            acc = f"{p['mean']:.3f} [{p['low']:.3f}, {p['high']:.3f}]"
            words = f"{p['answers']['mean_words']:.0f} ({p['answers']['under_10_words']:.0%} under 10)"
            print(f"| {arm} | {b} | {p.get('minutes', 0)} | {acc} | {vs} | {p['instruction_level']:.3f} | {words} |")
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()

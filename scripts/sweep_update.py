"""Sweep the update's settings on one round's explored candidates; judge them on validation prompts.

Exploration is the expensive half of a round and does not depend on the update's settings, so every variant
here trains from the base model on the same scored candidates (a finished round's candidates.jsonl) and is
then evaluated greedily on validation prompts, which must not be the held-out prompts of any reported result.

    python scripts/sweep_update.py --round-dir RUN/round-0001 --prompts TRAIN.jsonl --val VAL.jsonl \\
        --variant "lr5e-4:update.learning_rate=5e-4,update.group_size=4" [--variant ...] --out OUT.json

Variants may run as separate processes (one per core, ``--set run.threads=1``), each writing its own JSON.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-dir", required=True, type=Path, help="a finished round: candidates.jsonl, config.yaml")
    parser.add_argument("--prompts", required=True, type=Path, help="the prompts file that round explored")
    parser.add_argument("--val", required=True, type=Path, help="validation prompts (never held-out ones)")
    parser.add_argument("--variant", action="append", required=True, help="NAME:section.key=value,...")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

    import torch

    from reward.scorer import RewardSet
    from rollouts.transformers_engine import TransformersGenerator
    from tao import evaluation
    from tao.config import load_config
    from tao.console import Console
    from tao.model import Policy, resolve_base
    from tao.prompts import load_prompts
    from tao.training import grpo_update, read_groups

    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(quiet=True)
    base_config = load_config(args.round_dir / "config.yaml")
    base = resolve_base(base_config.model, console)
    policy = Policy(base, base_config.model, base_config.lora)
    train = load_prompts(args.prompts).prompts
    val = load_prompts(args.val).prompts
    groups = read_groups(args.round_dir / "candidates.jsonl", train, policy.tokenizer)
    groups = [g for g in groups if g.completions]
    checker = RewardSet(("rule:all_instructions",), False)
    engine = TransformersGenerator(policy, base_config.rollout.batch_size, console)
    max_new = base_config.rollout.max_new_tokens
    work = args.out.with_suffix("")
    base_rows = evaluation.evaluate(engine, checker, val, max_new, None)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, threads {torch.get_num_threads()}",
        "round": str(args.round_dir),
        "groups": len(groups),
        "val_prompts": len(val),
        "base": evaluation.mean_score(base_rows),
        "variants": {},
    }
    for spec in args.variant:
        name, _, sets = spec.partition(":")
        config = load_config(args.round_dir / "config.yaml", [s for s in sets.split(",") if s])
        started = time.perf_counter()
        with policy.attached(None, trainable=True, seed=config.run.seed) as model:
            stats = grpo_update(model, policy.tokenizer, groups, config, work / name / "scratch", console)
            model.save_pretrained(work / name / "adapter", selected_adapters=["default"])
        seconds = time.perf_counter() - started
        rows = evaluation.evaluate(engine, checker, val, max_new, work / name / "adapter")
        diff = evaluation.paired_difference(base_rows, rows)
        base_text = {r["prompt_id"]: r["text"] for r in base_rows}
        result["variants"][name] = {
            "settings": sets,
            "update_seconds": round(seconds, 1),
            **{k: stats.get(k) for k in ("groups_trained", "groups_skipped", "sequences_trained", "steps", "kl")},
            "val_pass": evaluation.mean_score(rows),
            "vs_base": diff.__dict__ if diff else None,
            "answers_changed": sum(r["text"] != base_text[r["prompt_id"]] for r in rows),
        }
        print(name, json.dumps(result["variants"][name]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

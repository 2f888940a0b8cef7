"""Which exploration gives GRPO more to learn from: plain sampling vs each strategy vs a mix, in one run.

Real prompts (IFEval, ``../shared/data/ifeval``, those whose instructions the default checker detects and that
need no long answer), the default model, the default reward (the instruction checker + finished + repetition).
Every configuration explores the same prompts with the same group size; the tokens each one generated (drafts
and discarded pools included) are reported next to what it found, and plain sampling is also run with a group
as large as best-of-N's pool, i.e. at the same token budget.

    python scripts/bench_explore.py [--prompts-limit 12] [--n 8] [--max-new-tokens 96] [--out FILE]

Prints, per configuration: mean score, best-of-group mean, share of groups with signal (any spread of the
reward), and on the checker's pass/fail (every detected instruction followed): share of passing candidates, share
of groups with a pass, share of groups with both a pass and a fail (a binary signal); tokens generated. The JSON
also holds each one's pass-signal share as a ratio to plain sampling's. Writes JSON (default:
docs/results/bench_explore.json).
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

GUIDES = (
    "Follow every formatting and wording instruction in the request exactly. Keep the answer short.",
    "You are a careful writer. Re-read the request, obey each constraint (case, punctuation, sections, words "
    "to include or avoid), and answer concisely.",
)


def ifeval_prompts(path: Path, limit: int) -> list:
    from reward.instructions import detect
    from tao.prompts import Message, Prompt

    out = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        ids = row["instruction_id_list"]
        prompt = Prompt(f"ifeval-{row['key']}", (Message("user", row["prompt"]),))
        if any(i.startswith("length_constraints") for i in ids) or not detect(prompt):
            continue
        out.append(prompt)
        if len(out) == limit:
            break
    return out


def figures(candidates, scores, tokens: int) -> dict:
    """Reward figures, and the same on the instruction checker's pass/fail (every detected instruction followed)."""
    from tao.config import UpdateConfig
    from tao.training import has_signal

    groups: dict[str, list] = {}
    for c, s in zip(candidates, scores, strict=True):
        groups.setdefault(c.prompt_id, []).append((s.total or 0.0, s.parts.get("rule:instructions") == 1.0))
    n = len(groups)
    return {
        "mean": sum(t for g in groups.values() for t, _ in g) / sum(len(g) for g in groups.values()),
        "best_of_group_mean": sum(max(t for t, _ in g) for g in groups.values()) / n,
        "signal_share": sum(has_signal([t for t, _ in g], UpdateConfig().min_spread) for g in groups.values()) / n,
        "pass_share": sum(p for g in groups.values() for _, p in g) / sum(len(g) for g in groups.values()),
        "groups_with_a_pass": sum(any(p for _, p in g) for g in groups.values()) / n,
        "pass_signal_share": sum(len({p for _, p in g}) == 2 for g in groups.values()) / n,
        "tokens": tokens,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/ifeval/prompts.jsonl"))
    parser.add_argument("--prompts-limit", type=int, default=12)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--out", default=str(ROOT / "docs/results/bench_explore.json"))
    args = parser.parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    from reward.scorer import RewardSet
    from rollouts import strategies
    from rollouts.generator import Sampling
    from rollouts.transformers_engine import TransformersGenerator
    from tao.config import Config
    from tao.console import Console
    from tao.model import Policy, resolve_base

    config = Config()
    console = Console(quiet=True)
    base = resolve_base(config.model, console)
    engine = TransformersGenerator(Policy(base, config.model, config.lora), 32, console)
    rewards = RewardSet(config.reward.scorers)
    prompts = ifeval_prompts(Path(args.data), args.prompts_limit)
    guide_file = Path(args.out).with_suffix(".guides.txt")
    guide_file.parent.mkdir(parents=True, exist_ok=True)
    guide_file.write_text("\n---\n".join(GUIDES) + "\n")
    n = args.n
    setups = {
        "sample (plain, T=0.8)": (["sample"], n),
        f"sample at best_of:2's budget (n={2 * n})": (["sample"], 2 * n),
        "ladder:0.4-1.2": (["ladder:0.4-1.2"], n),
        "think": (["think"], n),
        "guide (2 variants)": ([f"guide:{guide_file}"], n),
        "refine:1": (["refine:1"], n),
        "best_of:2": (["best_of:2"], n),
        "mix: sample=2, best_of:2, refine, ladder": (["sample=2", "best_of:2", "refine", "ladder:0.4-1.2"], n),
    }
    rows = {}
    for name, (specs, size) in setups.items():
        started = time.perf_counter()
        chosen = strategies.load_strategies(specs, size)
        sampling = Sampling(size, 0.8, 1.0, args.max_new_tokens, seed=0)
        candidates, spent = strategies.explore(engine, prompts, chosen, sampling, None, rewards.totals)
        scores = rewards.score([next(p for p in prompts if p.id == c.prompt_id) for c in candidates], candidates)
        rows[name] = {
            **figures(candidates, scores, sum(s["tokens"] for s in spent.values())),
            "group": size,
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(name, json.dumps(rows[name]), flush=True)
    plain = rows["sample (plain, T=0.8)"]
    for row in rows.values():
        share = plain["pass_signal_share"]
        row["pass_signal_vs_plain"] = round(row["pass_signal_share"] / share, 2) if share else None
        row["best_of_group_vs_plain"] = round(row["best_of_group_mean"] - plain["best_of_group_mean"], 3)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "model": "SmolLM2-135M-Instruct (embedded)",
        "reward": rewards.specs,
        "prompts": len(prompts),
        "data": "IFEval prompts (../shared/data/ifeval), detectable instructions, no length constraints",
        "max_new_tokens": args.max_new_tokens,
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    header = ("mean", "best/grp", "signal", "pass", "grp pass", "pass sig", "tokens")
    print(f"\n{'configuration':42} " + " ".join(f"{h:>8}" for h in header))
    for name, r in rows.items():
        cells = [f"{r['mean']:.3f}", f"{r['best_of_group_mean']:.3f}"]
        cells += [f"{r[k]:.0%}" for k in ("signal_share", "pass_share", "groups_with_a_pass", "pass_signal_share")]
        print(f"{name:42} " + " ".join(f"{c:>8}" for c in [*cells, str(r["tokens"])]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

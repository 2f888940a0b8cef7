"""Compute precision on this machine: float32 vs bfloat16 (``model.dtype``) for a round's two costly stages.

For each dtype, in one process and on the same prompts (IFEval prompts from ``../shared/data/ifeval``):

- **explore**: the transformers engine samples ``--n`` answers per prompt at T=0.8 (``--batch-size`` sequences per
  ``generate`` call), after a warm-up call; tokens/s counts answer tokens.
- **update**: ``tao.training.grpo_update`` on those candidates (fixed made-up rewards, so that every group has
  signal), ``--steps`` optimizer steps of 4 groups x 4 sequences; seconds per step.
- **greedy**: the share of greedy answers that are token-identical to float32's (how much the precision alone
  changes what the model says).

    python scripts/bench_dtype.py [--prompts 16] [--n 2] [--max-new-tokens 128] [--out FILE]

Prints each figure and the bfloat16/float32 speed ratios; writes JSON (default: docs/results/bench_dtype.json).
bfloat16 pays off on CPUs with AMX-BF16 (the JSON records whether this one has it); elsewhere expect a ratio < 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_quality import ifeval_items  # noqa: E402
from bench_rollouts import machine  # noqa: E402

IFEVAL = ROOT.parent / "shared" / "data" / "ifeval" / "prompts.jsonl"


def measure(dtype: str, prompts: list, args: argparse.Namespace, scratch: Path) -> tuple[dict, list]:
    from rollouts.generator import Sampling
    from rollouts.transformers_engine import TransformersGenerator, chat_token_ids
    from tao.config import Config, replace
    from tao.console import Console
    from tao.model import Policy, resolve_base
    from tao.training import Group, grpo_update

    console = Console(quiet=True)
    config = replace(
        Config(),
        model={"dtype": dtype},
        update={"learning_rate": 1e-3, "prompts_per_step": 4, "group_size": 4, "checkpoint_steps": 0},
        rollout={"max_new_tokens": args.max_new_tokens, "num_candidates": 4},
    )
    policy = Policy(resolve_base(config.model, console), config.model, config.lora)
    engine = TransformersGenerator(policy, args.batch_size, console)
    sampling = Sampling(args.n, 0.8, 1.0, args.max_new_tokens, seed=0)
    engine.generate(prompts[:1], sampling, None)  # warm-up
    started = time.perf_counter()
    cands = engine.generate(prompts, sampling, None)
    explore_s = time.perf_counter() - started
    tokens = sum(len(c.token_ids) for c in cands)
    greedy = engine.generate(prompts, Sampling(1, 0.0, 1.0, args.max_new_tokens, seed=0), None)

    # 4 groups a step, 4 candidates a group: the answers of two prompts (n=2 each) make one group
    per = 4 // args.n
    groups = [
        Group(
            prompts[i],
            tuple(chat_token_ids(policy.tokenizer, prompts[i])),
            tuple(c.token_ids for c in cands[i * args.n : (i + per) * args.n]),
            (0.0, 1.0, 0.5, 0.25),
        )
        for i in range(0, min(len(prompts), 4 * per * args.steps), per)
    ]
    with policy.attached(None, trainable=True, seed=0) as model:
        started = time.perf_counter()
        stats = grpo_update(model, policy.tokenizer, groups, config, scratch / dtype, console)
        update_s = time.perf_counter() - started
    result = {
        "explore": {"seconds": round(explore_s, 1), "tokens": tokens, "tokens_per_s": round(tokens / explore_s, 1)},
        "update": {
            "steps": stats["steps"],
            "seconds": round(update_s, 1),
            "seconds_per_step": round(update_s / stats["steps"], 1),
            "sequences_per_step": 16,
        },
    }
    return result, [c.token_ids for c in greedy]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--n", type=int, default=2, choices=(1, 2, 4), help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2, help="update steps timed")
    parser.add_argument("--out", default=str(ROOT / "docs/results/bench_dtype.json"))
    args = parser.parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    from tao.doctor import amx_bf16
    from tao.prompts import Message, Prompt

    items = ifeval_items(IFEVAL)[: args.prompts]
    prompts = [Prompt(i["id"], (Message("user", i["prompt"]),)) for i in items]
    results, greedy = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for dtype in ("float32", "bfloat16"):
            results[dtype], greedy[dtype] = measure(dtype, prompts, args, Path(scratch))
            print(dtype, json.dumps(results[dtype]), flush=True)
    same = sum(a == b for a, b in zip(greedy["float32"], greedy["bfloat16"], strict=True))
    ratios = {
        "explore_tokens_per_s": round(
            results["bfloat16"]["explore"]["tokens_per_s"] / results["float32"]["explore"]["tokens_per_s"], 2
        ),
        "update_steps_per_s": round(
            results["float32"]["update"]["seconds_per_step"] / results["bfloat16"]["update"]["seconds_per_step"], 2
        ),
    }
    out = {
        "machine": machine(),
        "amx_bf16": amx_bf16(),
        "model": "SmolLM2-135M-Instruct (embedded)",
        "settings": vars(args) | {"out": None},
        "results": results,
        "bfloat16_over_float32": ratios,
        "greedy_identical": f"{same}/{len(prompts)}",
    }
    print(
        f"bfloat16 / float32: explore {ratios['explore_tokens_per_s']}x tokens/s, "
        f"update {ratios['update_steps_per_s']}x steps/s; greedy answers identical {same}/{len(prompts)}"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

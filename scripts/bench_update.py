"""The update's LM head: trl's choice on a CPU (every position projected) against tao's (the completion tokens only).

In one run: the preset explores a few IFEval prompts once (seeded) and scores the candidates with its reward; then
the GRPO update and the RFT update each train a fresh adapter on those same groups twice, once with trl's fused
LM head projecting every position (its choice off GPUs) and once projecting only the completion tokens
(`tao/update/lm_head.py`), in the order A B B A so that drift of the machine falls on both. Reports the seconds of
each, the ratio, the rows projected and how far apart the two adapters ended (they should be equal).

    python scripts/bench_update.py [--config configs/small-model-checker.yaml] [--prompts-count 8] [--threads 1]

Prints the ratios and writes JSON (default: docs/results/bench_update.json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from shared_data import IFEVAL  # noqa: E402


def explored_groups(policy, config, prompts) -> list:
    """The preset's sampling and reward on ``prompts``: one scored group per prompt."""
    from reward.scorer import RewardSet
    from rollouts.transformers_engine import TransformersEngine
    from tao.core.console import Console
    from tao.core.model import chat_token_ids
    from tao.core.types import Sampling
    from tao.update.grpo import Group

    r = config.rollout
    sampling = Sampling(r.num_candidates, r.temperature, r.top_p, r.max_new_tokens, seed=0)
    candidates = TransformersEngine(policy, r.batch_size, Console(quiet=True)).generate(prompts, sampling, None)
    rewards = RewardSet.from_config(config.reward.scorers, config, config.reward.gate)
    scores = rewards.score([p for p in prompts for _ in range(r.num_candidates)], candidates)
    n = r.num_candidates
    return [
        Group(
            p,
            tuple(chat_token_ids(policy.tokenizer, p)),
            tuple(c.token_ids for c in candidates[i * n : (i + 1) * n]),
            tuple(s.total for s in scores[i * n : (i + 1) * n]),
        )
        for i, p in enumerate(prompts)
    ]


def timed_update(policy, config, groups, method: str, head: str, scratch: Path) -> dict:
    """One update from a fresh adapter; ``head`` "trl" leaves trl's choice, "tao" projects the completion only."""
    import torch
    import trl.trainer.utils

    import tao.update.grpo
    import tao.update.rft
    from tao.core.console import Console
    from tao.update.lm_head import completion_tokens_only

    update = tao.update.grpo.grpo_update if method == "grpo" else tao.update.rft.rft_update
    choice = completion_tokens_only if head == "tao" else contextlib.nullcontext
    real = trl.trainer.utils._ChunkedLogProbFunction.apply
    rows: list[int] = []

    def counting(hidden, *args):
        rows.append(hidden.shape[0])
        return real(hidden, *args)

    tao.update.grpo.completion_tokens_only = tao.update.rft.completion_tokens_only = choice
    trl.trainer.utils._ChunkedLogProbFunction.apply = counting
    try:
        with policy.attached(None, trainable=True, seed=0) as model:
            started = time.perf_counter()
            stats = update(model, policy.tokenizer, groups, config, scratch, Console(quiet=True))
            seconds = time.perf_counter() - started
            weights = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    finally:
        trl.trainer.utils._ChunkedLogProbFunction.apply = real
        tao.update.grpo.completion_tokens_only = tao.update.rft.completion_tokens_only = completion_tokens_only
    return {
        "seconds": round(seconds, 2),
        "steps": stats["steps"],
        "rows_projected": sum(rows),
        "weights": {n: w.to(torch.float64) for n, w in weights.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs/small-model-checker.yaml"))
    parser.add_argument("--prompts", default=str(IFEVAL), help="JSONL with a 'prompt' field (IFEval's file)")
    parser.add_argument("--prompts-count", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "docs/results/bench_update.json"))
    args = parser.parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

    import torch

    from tao.core.config_file import load_config
    from tao.core.console import Console
    from tao.core.model import Policy, resolve_base
    from tao.core.types import Message, Prompt

    torch.set_num_threads(args.threads)
    config = load_config(Path(args.config), [])
    policy = Policy(resolve_base(config.model, Console(quiet=True)), config.model, config.lora)
    lines = Path(args.prompts).read_text(encoding="utf-8").splitlines()[: args.prompts_count]
    prompts = [Prompt(str(r["key"]), (Message("user", r["prompt"]),)) for r in map(json.loads, lines)]
    started = time.perf_counter()
    groups = explored_groups(policy, config, prompts)
    explore_seconds = time.perf_counter() - started

    methods = {}
    with tempfile.TemporaryDirectory() as scratch:
        for method in ("grpo", "rft"):
            runs: dict[str, list[dict]] = {"trl": [], "tao": []}
            for i, head in enumerate(("trl", "tao", "tao", "trl")):
                runs[head].append(timed_update(policy, config, groups, method, head, Path(scratch) / f"{method}{i}"))
            first = {head: r[0] for head, r in runs.items()}
            apart = max((first["trl"]["weights"][n] - w).abs().max().item() for n, w in first["tao"]["weights"].items())
            seconds = {head: [r["seconds"] for r in rs] for head, rs in runs.items()}
            ratio = sum(seconds["trl"]) / sum(seconds["tao"])
            methods[method] = {
                "steps": first["tao"]["steps"],
                "seconds": seconds,
                "rows_projected": {head: r["rows_projected"] for head, r in first.items()},
                "trl_over_tao": round(ratio, 2),
                "max_weight_difference": apart,
            }
            print(
                f"{method}: trl's head {seconds['trl']} s, completion only {seconds['tao']} s: {ratio:.2f}x; "
                f"rows projected {first['trl']['rows_projected']} vs {first['tao']['rows_projected']}; "
                f"adapters apart by at most {apart:.1e}",
                flush=True,
            )

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} thread(s)",
        "model": config.model.name,
        "settings": {
            "config": args.config,
            "prompts": f"IFEval, the first {args.prompts_count} of the file",
            "candidates": sum(len(g.completions) for g in groups),
            "explore_seconds": round(explore_seconds, 1),
            "order": "trl, tao, tao, trl for each method",
        },
        "methods": methods,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

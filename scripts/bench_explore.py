"""One round's exploration as the preset runs it: every strategy's requests in one decode stream, against the
engine before it (each request on its own, cut into batches that each decode down to their last answer), in one
run, in the order A B B A.

The preset's strategies and settings, its first round's number of prompts (the first of IFEval's file), a fresh
LoRA adapter attached (as every round after the first), one torch thread by default. Tokens/s counts every
generated token (best-of's discarded pool included), over the exploration's wall clock.

    python scripts/bench_explore.py [--config configs/small-model-checker.yaml] [--threads 1] [--out FILE]

Prints the ratio; writes JSON (default: docs/results/bench_explore.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_data import IFEVAL  # noqa: E402


class OneRequestAtATime:
    """The engine before one stream: each request decoded on its own, its prompts sorted by length and cut into
    batches of ``batch_size // n`` prompts, each batch decoded until its last answer ends."""

    def __init__(self, engine):
        self.engine, self.tokenizer = engine, engine.tokenizer

    def generate_many(self, asks, adapter):
        return [self.generate(list(ask.prompts), ask.sampling, adapter) for ask in asks]

    def generate(self, prompts, sampling, adapter):
        per_call = max(1, self.engine.batch_size // sampling.n)
        order = sorted(
            range(len(prompts)), key=lambda i: (len(self.engine.prompt_token_ids(prompts[i])), prompts[i].id)
        )
        found = {}
        for start in range(0, len(order), per_call):
            batch = [prompts[i] for i in order[start : start + per_call]]
            step = replace(sampling, seed=sampling.seed * 100_003 + start)
            for c in self.engine.generate(batch, step, adapter):  # fits in one batch: decoded together to the end
                found.setdefault(c.prompt_id, []).append(c)
        return [c for p in prompts for c in found[p.id]]


def timed_explore(engine, prompts, chosen, sampling, adapter, score) -> dict:
    from rollouts import strategies

    started = time.perf_counter()
    _, spent = strategies.explore(engine, prompts, chosen, sampling, adapter, score)
    seconds = time.perf_counter() - started
    tokens = sum(s["tokens"] for s in spent.values())
    return {"seconds": round(seconds, 1), "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs/small-model-checker.yaml"))
    parser.add_argument("--prompts", default=str(IFEVAL), help="JSONL with a 'prompt' field (IFEval's file)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "docs/results/bench_explore.json"))
    args = parser.parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    import torch

    from reward.scorer import RewardSet
    from rollouts import strategies
    from rollouts.transformers_engine import TransformersEngine
    from tao.core.config_file import load_config
    from tao.core.console import Console
    from tao.core.model import Policy, resolve_base
    from tao.core.types import Message, Prompt, Sampling

    torch.set_num_threads(args.threads)
    config = load_config(Path(args.config), [])
    console = Console(quiet=True)
    policy = Policy(resolve_base(config.model, console), config.model, config.lora)
    rows = [json.loads(line) for line in Path(args.prompts).read_text(encoding="utf-8").splitlines()]
    prompts = [Prompt(str(r["key"]), (Message("user", r["prompt"]),)) for r in rows][: config.data.prompts_per_round]
    r = config.rollout
    sampling = Sampling(r.num_candidates, r.temperature, r.top_p, r.max_new_tokens, config.run.seed)
    chosen = strategies.load_strategies(r.strategies, r.num_candidates)
    rewards = RewardSet.from_config(config.reward.scorers, config, config.reward.gate)
    scratch = tempfile.TemporaryDirectory()
    adapter = Path(scratch.name) / "adapter"
    with policy.attached(None, trainable=True) as model:
        model.save_pretrained(adapter)
    stream = TransformersEngine(policy, r.batch_size, console)
    engines = {"one_request_at_a_time": OneRequestAtATime(stream), "one_stream": stream}
    stream.generate(prompts[:1], sampling, adapter)  # warm-up

    runs: dict[str, list[dict]] = {name: [] for name in engines}
    for name in ("one_request_at_a_time", "one_stream", "one_stream", "one_request_at_a_time"):
        runs[name].append(timed_explore(engines[name], prompts, chosen, sampling, adapter, rewards.totals))
        print(f"{name}: {runs[name][-1]}", flush=True)
    rate = {name: sum(x["tokens"] for x in v) / sum(x["seconds"] for x in v) for name, v in runs.items()}
    ratio = rate["one_stream"] / rate["one_request_at_a_time"]
    print(f"one stream / one request at a time: {ratio:.2f}x tokens/s")
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} thread(s)",
        "model": config.model.name,
        "settings": {
            "config": os.path.relpath(args.config, ROOT),
            "prompts": f"the first {len(prompts)} of IFEval's file",
            "strategies": list(r.strategies),
            "num_candidates": r.num_candidates,
            "batch_size": r.batch_size,
            "max_new_tokens": r.max_new_tokens,
            "adapter": "a fresh LoRA adapter attached",
            "order": "A B B A",
        },
        "runs": runs,
        "tokens_per_s": {name: round(v, 1) for name, v in rate.items()},
        "one_stream_over_one_request_at_a_time": round(ratio, 2),
    }
    scratch.cleanup()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Exploration's generation: tokens/s of the engine's batched ``generate`` at several ``rollout.batch_size`` values.

The same IFEval prompts (``../shared/data/ifeval/``), ``--n`` samples each at T=0.8, through the transformers engine
as ``tao run`` uses it, once per batch size after one warm-up call, on the threads torch is given (pin with
``taskset`` and ``OMP_NUM_THREADS`` to match a benchmark run). The baseline is the default, 32 sequences a call.

    python scripts/bench_batch_size.py [--model DIR] [--sizes 16,32,64] [--num-prompts 48] [--n 2] [--out FILE]

Prints tokens/s per size and its ratio to 32's; writes JSON (default: docs/results/bench_batch_size.json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BASELINE = 32  # rollout.batch_size's default


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--sizes", default="16,32,64", help="sequences per generate call, comma-separated")
    parser.add_argument("--num-prompts", type=int, default=48)
    parser.add_argument("--n", type=int, default=2, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--out", default=str(ROOT / "docs/results/bench_batch_size.json"))
    args = parser.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",")} | {BASELINE})
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    from bench_batching import conditions, setup  # the same model and prompts as the continuous-batching benchmark

    from rollouts.generator import Sampling
    from rollouts.transformers_engine import TransformersGenerator
    from tao.console import Console

    policy, prompts = setup(args.model, args.num_prompts)
    sampling = Sampling(args.n, 0.8, 1.0, args.max_new_tokens, seed=0)

    runs = {}
    for size in sizes:
        engine = TransformersGenerator(policy, size, Console(quiet=True))
        engine.generate(prompts[:1], sampling, None)  # warm-up
        started = time.perf_counter()
        out = engine.generate(prompts, sampling, None)
        seconds = time.perf_counter() - started
        tokens = sum(len(c.token_ids) for c in out)
        runs[size] = {"tokens": tokens, "seconds": round(seconds, 1), "tokens_per_s": round(tokens / seconds, 1)}
        print(f"{size:4d} sequences a call: {runs[size]['tokens_per_s']} tok/s ({tokens} tokens)", flush=True)
    for size in sizes:
        runs[size]["vs_baseline"] = round(runs[size]["tokens_per_s"] / runs[BASELINE]["tokens_per_s"], 2)
        print(f"{size:4d} / {BASELINE}: {runs[size]['vs_baseline']}x")

    result = {
        **conditions(args, len(prompts)),
        "baseline_batch_size": BASELINE,
        "batch_sizes": {str(size): r for size, r in runs.items()},
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

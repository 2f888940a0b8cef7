"""Exploration's generation: the engine's batched ``generate`` vs transformers' continuous batching, in one run.

A batched ``generate`` decodes every sequence of a call until the longest one ends, so answers that finish early
ride along as padding; continuous batching (transformers' ``generate_batch``, paged attention) frees their slots.
Both answer the same IFEval prompts (``../shared/data/ifeval/``), ``--n`` samples each at T=0.8, after a warm-up
call, on the threads torch is given (pin with ``taskset`` and ``OMP_NUM_THREADS`` to match a benchmark run).

    python scripts/bench_batching.py [--model DIR] [--num-prompts 48] [--n 2] [--out FILE]

Prints tokens/s of each and the continuous/batched ratio; writes JSON (default: docs/results/bench_batching.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from tao.model import Policy
    from tao.prompts import Prompt


def continuous(model, encoded: list[list[int]], config) -> tuple[int, float]:
    """Generated tokens and seconds of one ``generate_batch`` call over all prompts."""
    import torch

    started = time.perf_counter()
    with torch.no_grad():  # generate_batch updates its tensors in place: inference mode refuses that
        out = model.generate_batch(inputs=encoded, generation_config=config)
    return sum(len(o.generated_tokens) for o in out.values()), time.perf_counter() - started


def setup(model: str, num_prompts: int) -> tuple[Policy, list[Prompt]]:
    """The model's policy (``default``: the embedded model) and the first ``num_prompts`` IFEval prompts."""
    from tao.config import Config, replace
    from tao.console import Console
    from tao.model import Policy, resolve_base
    from tao.prompts import Message, Prompt

    config = replace(Config(), model={"name": model})
    policy = Policy(resolve_base(config.model, Console(quiet=True)), config.model, config.lora)
    rows = [json.loads(line) for line in (ROOT.parent / "shared/data/ifeval/prompts.jsonl").open()]
    return policy, [Prompt(str(r["key"]), (Message("user", r["prompt"]),)) for r in rows[:num_prompts]]


def conditions(args: argparse.Namespace, prompts: int) -> dict:
    """What a generation benchmark's JSON says about where and on what it ran."""
    import torch

    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "model": "SmolLM2-135M-Instruct (embedded)" if args.model == "default" else args.model,
        "prompts": f"IFEval, first {prompts}",
        "samples_per_prompt": args.n,
        "max_new_tokens": args.max_new_tokens,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--num-prompts", type=int, default=48)
    parser.add_argument("--n", type=int, default=2, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32, help="the engine's sequences per generate call")
    parser.add_argument("--out", default=str(ROOT / "docs/results/bench_batching.json"))
    args = parser.parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    from transformers import GenerationConfig

    from rollouts.generator import Sampling
    from rollouts.transformers_engine import TransformersGenerator
    from tao.console import Console

    policy, prompts = setup(args.model, args.num_prompts)
    sampling = Sampling(args.n, 0.8, 1.0, args.max_new_tokens, seed=0)

    engine = TransformersGenerator(policy, args.batch_size, Console(quiet=True))
    engine.generate(prompts[:1], sampling, None)  # warm-up
    started = time.perf_counter()
    batched = engine.generate(prompts, sampling, None)
    batched_s = time.perf_counter() - started
    batched_tokens = sum(len(c.token_ids) for c in batched)

    with policy.attached(None) as model:  # no adapter: the plain transformers model
        gen = GenerationConfig(
            max_new_tokens=args.max_new_tokens, do_sample=True, temperature=0.8, top_p=1.0, top_k=None,
            num_return_sequences=args.n, eos_token_id=engine.stop_ids, pad_token_id=engine.tokenizer.pad_token_id,
        )  # fmt: skip
        encoded = [engine.prompt_token_ids(p) for p in prompts]
        continuous(model, encoded[:1], gen)  # warm-up
        cont_tokens, cont_s = continuous(model, encoded, gen)

    result = {
        **conditions(args, len(prompts)),
        "batched": {"batch_size": args.batch_size, "tokens": batched_tokens, "seconds": round(batched_s, 1),
                    "tokens_per_s": round(batched_tokens / batched_s, 1)},
        "continuous": {"tokens": cont_tokens, "seconds": round(cont_s, 1),
                       "tokens_per_s": round(cont_tokens / cont_s, 1)},
    }  # fmt: skip
    result["ratio_continuous_vs_batched"] = round(
        result["continuous"]["tokens_per_s"] / result["batched"]["tokens_per_s"], 2
    )
    print(f"batched generate ({args.batch_size} a call): {result['batched']['tokens_per_s']} tok/s")
    print(f"continuous batching (generate_batch):  {result['continuous']['tokens_per_s']} tok/s")
    print(f"continuous / batched: {result['ratio_continuous_vs_batched']}x")
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

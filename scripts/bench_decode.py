"""Exploration speed against the hardware: the engine's tokens/s as `tao run` calls it, as a share of torch's own
matrix-multiply rate at the model's decode shapes, beside transformers' ``generate`` (the engine before its decode
loop), all in one run.

For each thread count and batch size (sequences decoded together), the ceiling: torch multiplies a batch of rows
by each linear weight shape of the model, weighted as one decode step has them (the weight stays in cache: the
rate the core reaches on that arithmetic). Then the engine (plain, and with a fresh LoRA adapter attached, as
rounds after the first run it) and ``generate`` answer the same IFEval prompts, 4 samples each, with the preset's
answer budget and temperature. Achieved GFLOP/s = generated tokens x 2 x (linear weights a token passes through)
/ seconds: the prompt's prefill and attention count nothing.

    python scripts/bench_decode.py [--config configs/small-model-checker.yaml] [--threads 1,2]
                                   [--batch-sizes 16,32,64] [--out FILE]

Prints a line per cell; writes JSON (default: docs/results/bench_decode.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_data import IFEVAL  # noqa: E402

SAMPLES = 4  # candidates per prompt in one call, as a strategy's share of a group
NAMES = ("engine", "engine_with_adapter", "generate")


def linear_shapes(model) -> list[tuple[int, int]]:
    """(in, out) of every linear layer one token passes through, the output head included."""
    import torch

    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear)]


def matmul_rate(shapes: list[tuple[int, int]], rows: int, seconds: float = 0.3) -> float:
    """GFLOP/s of torch's linear at ``rows`` x each (in, out) shape, weighted as one decode step has them."""
    import torch

    total_flops = total_time = 0.0
    for fan_in, fan_out in sorted(set(shapes)):
        count = shapes.count((fan_in, fan_out))
        x, w = torch.randn(rows, fan_in), torch.randn(fan_out, fan_in)
        torch.nn.functional.linear(x, w)
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            torch.nn.functional.linear(x, w)
            calls += 1
        total_time += (time.perf_counter() - started) / calls * count
        total_flops += 2 * rows * fan_in * fan_out * count
    return total_flops / total_time / 1e9


def generate_baseline(engine, prompts, sampling) -> list[list[int]]:
    """transformers' batched ``generate`` on the same prompts: left-padded, finished rows decoded to the end."""
    import torch
    from transformers import GenerationConfig

    ids = [engine.prompt_token_ids(p) for p in prompts]
    width, pad = max(len(i) for i in ids), engine.pad_id
    config = GenerationConfig(
        max_new_tokens=sampling.max_new_tokens,
        do_sample=True,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=None,
        num_return_sequences=sampling.n,
        eos_token_id=engine.stop_ids,
        pad_token_id=pad,
    )
    with engine.policy.attached(None) as model, torch.inference_mode():
        out = model.generate(
            input_ids=torch.tensor([[pad] * (width - len(i)) + i for i in ids]),
            attention_mask=torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids]),
            generation_config=config,
        )
    answers = []
    for row in out[:, width:].tolist():
        ends = [k for k, token in enumerate(row) if token in engine.stop_ids]
        answers.append(row[: ends[0] + 1] if ends else row)
    return answers


def timed(generate, *args) -> dict:
    """Seconds, generated tokens and tokens/s of ``generate(*args)`` (a list of answers' token ids)."""
    started = time.perf_counter()
    tokens = sum(len(ids) for ids in generate(*args))
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 1), "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1)}


def engine_answers(engine, prompts, sampling, adapter) -> list[tuple[int, ...]]:
    return [c.token_ids for c in engine.generate(prompts, sampling, adapter)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs/small-model-checker.yaml"))
    parser.add_argument("--prompts", default=str(IFEVAL), help="JSONL with a 'prompt' field (IFEval's file)")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--batch-sizes", default="16,32,64")
    parser.add_argument("--out", default=str(ROOT / "docs/results/bench_decode.json"))
    args = parser.parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    import torch

    from rollouts.transformers_engine import TransformersEngine
    from tao.core.config_file import load_config
    from tao.core.console import Console
    from tao.core.model import Policy, resolve_base
    from tao.core.types import Message, Prompt, Sampling

    config = load_config(Path(args.config), [])
    console = Console(quiet=True)
    policy = Policy(resolve_base(config.model, console), config.model, config.lora)
    rows = [json.loads(line) for line in Path(args.prompts).read_text(encoding="utf-8").splitlines()]
    prompts = [Prompt(str(r["key"]), (Message("user", r["prompt"]),)) for r in rows]
    sampling = Sampling(SAMPLES, config.rollout.temperature, config.rollout.top_p, config.rollout.max_new_tokens, 0)
    with policy.attached(None) as model:
        shapes = linear_shapes(model)
    flops_per_token = 2 * sum(i * o for i, o in shapes)
    scratch = tempfile.TemporaryDirectory()
    adapter = Path(scratch.name) / "adapter"  # a fresh LoRA adapter: what rounds after the first attach
    with policy.attached(None, trainable=True) as model:
        model.save_pretrained(adapter)

    cells = []
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            engine = TransformersEngine(policy, batch, console)
            asked = prompts[: batch // SAMPLES]
            engine.generate(asked[:1], sampling, None)  # warm-up
            rate = matmul_rate(shapes, batch)
            cell: dict = {
                "threads": threads,
                "batch_size": batch,
                "matmul_gflops": round(rate, 1),
                "engine": timed(engine_answers, engine, asked, sampling, None),
                "engine_with_adapter": timed(engine_answers, engine, asked, sampling, adapter),
                "generate": timed(generate_baseline, engine, asked, sampling),
            }
            for name in NAMES:
                gflops = cell[name]["tokens_per_s"] * flops_per_token / 1e9
                cell[name] |= {"gflops": round(gflops, 1), "share_of_matmul": round(gflops / rate, 3)}
            cell["engine_over_generate"] = round(cell["engine"]["gflops"] / cell["generate"]["gflops"], 2)
            cells.append(cell)
            print(
                f"threads {threads} batch {batch:>3}: matmul {rate:6.1f} GFLOP/s; "
                + "; ".join(f"{n} {cell[n]['tokens_per_s']} tok/s {cell[n]['share_of_matmul']:.0%}" for n in NAMES)
                + f"; engine/generate {cell['engine_over_generate']:.2f}x",
                flush=True,
            )

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "model": config.model.name,
        "settings": {
            "config": args.config,
            "samples_per_prompt": SAMPLES,
            "max_new_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "gflop_per_token": round(flops_per_token / 1e9, 3),
            "prompts": "IFEval, the first batch_size / 4 of the file",
        },
        "cells": cells,
    }
    scratch.cleanup()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

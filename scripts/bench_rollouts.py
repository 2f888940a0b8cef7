"""Generation throughput: the same prompts and sampling through transformers and through vLLM, in one run.

For each batch size (transformers: sequences per generate call; vLLM: max_num_seqs) each engine answers the
same prompts, ``--n`` samples each, after one warm-up call; vLLM's start-up is timed apart. Also measured,
once: how often the two engines' greedy answers are token-identical, and how far vLLM's sampled-token
log-probabilities are from the transformers model's own on the same tokens. An engine that cannot run here
(e.g. no vLLM on the GPU machine) is skipped and the reason recorded.

    python scripts/bench_rollouts.py [--model DIR] [--batch-sizes 8,32,64] [--out FILE]

Prints tokens/s and the vLLM/transformers ratio per batch size; writes JSON (default:
docs/results/bench_rollouts.json).
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


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    threads = torch.get_num_threads()
    return f"{platform.machine()}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}, {threads} threads"


def timed(engine, prompts, sampling) -> dict:
    engine.generate(prompts[:1], sampling, None)  # warm-up (and vLLM's start-up)
    started = time.perf_counter()
    out = engine.generate(prompts, sampling, None)
    seconds = time.perf_counter() - started
    tokens = sum(len(c.token_ids) for c in out)
    return {"seconds": round(seconds, 2), "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1)}


def agreement(vllm_engine, policy, prompts, sampling, greedy_hf, greedy_vllm) -> dict:
    """Greedy token-identity share, and |vLLM logprob - transformers logprob| over sampled tokens."""
    import torch

    same = sum(a.token_ids == b.token_ids for a, b in zip(greedy_hf, greedy_vllm, strict=True))
    candidates = vllm_engine.generate(prompts, sampling, None)
    diffs = []
    by_id = {p.id: p for p in prompts}
    with policy.attached(None) as model, torch.no_grad():
        device = next(model.parameters()).device
        for c in candidates:
            prompt_ids = vllm_engine.prompt_token_ids(by_id[c.prompt_id])
            ids = torch.tensor([prompt_ids + list(c.token_ids)], device=device)
            logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float() / sampling.temperature
            ours = torch.log_softmax(logits, -1).gather(1, ids[0, len(prompt_ids) :, None])[:, 0].cpu()
            diffs += (torch.tensor(c.logprobs) - ours).abs().tolist()
    return {
        "greedy_identical_share": same / len(greedy_hf),
        "logprob_abs_diff_mean": sum(diffs) / len(diffs),
        "logprob_abs_diff_max": max(diffs),
        "tokens_compared": len(diffs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--prompts", default=str(ROOT / "examples/prompts.jsonl"))
    parser.add_argument("--num-prompts", type=int, default=16)
    parser.add_argument("--n", type=int, default=4, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-sizes", default="8,32,64")
    parser.add_argument("--engines", default="transformers,vllm")
    parser.add_argument("--out", default=str(ROOT / "docs/results/bench_rollouts.json"))
    args = parser.parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

    import torch

    from rollouts.choice import vllm_problem
    from rollouts.transformers_engine import TransformersEngine
    from tao.core.config import Config
    from tao.core.config_file import replace
    from tao.core.console import Console
    from tao.core.model import Policy, resolve_base
    from tao.core.prompts import load_prompts
    from tao.core.types import Sampling

    console = Console(quiet=True)
    config = replace(Config(), model={"name": args.model})
    base = resolve_base(config.model, console)
    policy = Policy(base, config.model, config.lora)
    prompts = load_prompts(Path(args.prompts)).prompts[: args.num_prompts]
    sampling = Sampling(args.n, 0.8, 1.0, args.max_new_tokens, seed=0)
    greedy = Sampling(1, 0.0, 1.0, args.max_new_tokens, seed=0)
    engines = args.engines.split(",")
    cuda = torch.cuda.is_available()
    skipped = {}
    if "vllm" in engines and (problem := vllm_problem(config.model.quantize, cuda)):
        skipped["vllm"] = problem
        engines.remove("vllm")

    rows, extra = [], {}
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        row: dict = {"batch_size": batch}
        cfg = replace(config, rollout={"batch_size": batch})
        if "transformers" in engines:
            hf = TransformersEngine(policy, batch, console)
            row["transformers"] = timed(hf, prompts, sampling)
        if "vllm" in engines:
            from rollouts.vllm_engine import VllmEngine

            started = time.perf_counter()
            vl = VllmEngine(base, policy.tokenizer, cfg, console)
            vl.generate(prompts[:1], greedy, None)
            row["vllm_startup_s"] = round(time.perf_counter() - started, 1)
            row["vllm"] = timed(vl, prompts, sampling)
            if not extra and "transformers" in engines:
                hf_greedy = TransformersEngine(policy, batch, console).generate(prompts, greedy, None)
                extra = agreement(vl, policy, prompts, sampling, hf_greedy, vl.generate(prompts, greedy, None))
            vl.close()
        if "transformers" in row and "vllm" in row:
            row["ratio_vllm_over_transformers"] = round(
                row["vllm"]["tokens_per_s"] / row["transformers"]["tokens_per_s"], 2
            )
        rows.append(row)
        print(json.dumps(row))

    result = {
        "machine": machine(),
        "model": "SmolLM2-135M-Instruct (embedded)" if args.model == "default" else args.model,
        "settings": {
            "prompts": len(prompts),
            "samples_per_prompt": args.n,
            "max_new_tokens": args.max_new_tokens,
            "temperature": 0.8,
            "dtype": "bfloat16" if cuda else "float32",
        },
        "skipped": skipped,
        "rows": rows,
        "agreement": extra,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for row in rows:
        tf, vl = row.get("transformers", {}), row.get("vllm", {})
        print(
            f"batch {row['batch_size']:>3}: transformers {tf.get('tokens_per_s', '-')} tok/s, "
            f"vLLM {vl.get('tokens_per_s', '-')} tok/s, ratio {row.get('ratio_vllm_over_transformers', '-')}"
        )
    if extra:
        print(
            f"greedy identical: {extra['greedy_identical_share']:.0%}; sampled-token |logprob diff| "
            f"mean {extra['logprob_abs_diff_mean']:.2e}, max {extra['logprob_abs_diff_max']:.2e}"
        )
    for engine, why in skipped.items():
        print(f"skipped {engine}: {why}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Overhead of one `tao run` round against a plain trl GRPOTrainer script doing the same update.

Both run in this process, one after the other, on the same base model, prompts, LoRA shape, group size,
answer budget, learning rate and scorer (the configured reward set). The plain script lets trl generate
and score itself (its own loop); `tao run` explores, scores, updates on the replayed candidates, and also
evaluates the base and the new adapter on held-out prompts, which the plain script does not do.

    python scripts/bench_round.py [--model DIR] [--config configs/smoke.yaml] [--out FILE]

Prints the ratios and writes JSON (default: docs/results/bench_round.json).
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


def plain_trl(config, base_path: Path, prompts, rewards, scratch: Path) -> dict:
    """What a user would write with trl alone: GRPOTrainer generates, scores and updates."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from tao.core.model import lora_targets
    from tao.core.types import Candidate

    by_text = {json.dumps(p.chat()): p for p in prompts}

    def reward(prompts, completions, completion_ids, **kwargs):
        ps = [by_text[json.dumps(p)] for p in prompts]
        cands = [
            Candidate(p.id, 0, c[0]["content"], tuple(i), False, "sample")
            for p, c, i in zip(ps, completions, completion_ids, strict=True)
        ]
        return [s.total for s in rewards.score(ps, cands)]

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    g = config.rollout.num_candidates
    args = GRPOConfig(
        output_dir=str(scratch),
        learning_rate=config.update.learning_rate,
        beta=config.update.beta,
        num_generations=g,
        per_device_train_batch_size=g,
        gradient_accumulation_steps=config.update.prompts_per_step,
        temperature=config.rollout.temperature,
        top_p=config.rollout.top_p,
        max_completion_length=config.rollout.max_new_tokens,
        num_train_epochs=config.update.epochs,
        bf16=False,
        use_cpu=True,
        gradient_checkpointing=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        seed=config.run.seed,
    )
    lora = LoraConfig(
        r=config.lora.rank,
        lora_alpha=config.lora.alpha,
        target_modules=lora_targets(config.lora),
        task_type="CAUSAL_LM",
    )
    dataset = Dataset.from_list([{"prompt": p.chat()} for p in prompts])
    trainer = GRPOTrainer(
        model=model, reward_funcs=reward, args=args, processing_class=tokenizer, train_dataset=dataset, peft_config=lora
    )
    setup = time.perf_counter() - started
    trainer.train()
    train = time.perf_counter() - started - setup
    trainer.model.save_pretrained(scratch / "adapter")
    return {
        "setup_s": setup,
        "train_s": train,
        "total_s": time.perf_counter() - started,
        "steps": trainer.state.global_step,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--config", default=str(ROOT / "configs/smoke.yaml"))
    parser.add_argument("--prompts", default=str(ROOT / "examples/prompts.jsonl"))
    parser.add_argument("--out", default=str(ROOT / "docs/results/bench_round.json"))
    args = parser.parse_args()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    from reward.scorer import RewardSet
    from tao.core.config_file import load_config, replace
    from tao.core.console import Console
    from tao.core.model import resolve_base
    from tao.core.storage import read_json
    from tao.core.types import Prompt
    from tao.loop import run

    config = replace(load_config(args.config), model={"name": args.model})
    console = Console(quiet=True)
    base = resolve_base(config.model, console)  # convert the embedded model before timing anything
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        (manifest,) = run(Path(args.prompts), config, Path(tmp) / "run", console)
        ours_total = time.perf_counter() - started
        stages = manifest["timings"]
        steps = read_json(Path(tmp) / "run/round-0001/metrics.json")["update"]["steps"]
        plan = read_json(Path(tmp) / "run/round-0001/plan.json")
        prompts = [Prompt.from_row(row) for row in plan["prompts"]]

        trl_result = plain_trl(config, base.path, prompts, RewardSet(config.reward.scorers), Path(tmp) / "trl")

    ours_update_path = stages["explore"] + stages["score"] + stages["update"]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "model": config.model.name if config.model.name != "default" else "SmolLM2-135M-Instruct (embedded)",
        "config": args.config,
        "prompts": len(prompts),
        "tao": {
            "stages_s": stages,
            "explore_score_update_s": ours_update_path,
            "total_s": ours_total,
            "update_steps": steps,
        },
        "trl": trl_result,
        "ratio_explore_score_update_vs_trl_train": ours_update_path / trl_result["train_s"],
        "ratio_total": ours_total / trl_result["total_s"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"tao round: explore+score+update {ours_update_path:.1f}s ({result['tao']['update_steps']} steps), "
        f"evaluate {stages['evaluate']:.1f}s, total {ours_total:.1f}s"
    )
    print(
        f"plain trl: train {trl_result['train_s']:.1f}s ({trl_result['steps']} steps), "
        f"total {trl_result['total_s']:.1f}s"
    )
    print(f"ratio (tao explore+score+update / trl train): {result['ratio_explore_score_update_vs_trl_train']:.2f}")
    print(f"ratio (tao total incl. held-out eval / trl total): {result['ratio_total']:.2f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

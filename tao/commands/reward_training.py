"""``tao reward train`` and ``tao reward eval``: a reward model from preference pairs, and how far to trust it.

Training is trl's RewardTrainer (Bradley-Terry loss on chosen vs rejected) with a LoRA adapter on the base
model loaded as a one-output sequence classifier; peft trains the new scoring head in full. The adapter is then
merged into a float32 copy of the base, so the output directory is a plain sequence-classification model that
``tao run --reward rm:DIR`` and trl's GRPOTrainer load directly. Pairs are held out by prompt (seeded), so the
reported accuracy is on prompts the model never saw.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from reward.pairs import Pair, load_pairs
from reward.reward_model import RewardModelScorer
from reward.scorer import RewardSet
from tao.core.config import Config
from tao.core.config_file import to_dict
from tao.core.console import Console
from tao.core.errors import InputError
from tao.core.model import check_lora_targets, load_kwargs, load_tokenizer, peft_lora_config, resolve_base
from tao.core.storage import publish_dir, read_json, write_json
from tao.core.types import Candidate
from tao.evaluation import bootstrap
from tao.run import registry, tracker


def split_by_prompt(pairs: Sequence[Pair], holdout: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """(train, held out): every pair of a prompt on the same side."""
    prompts = sorted({p.prompt.content_key for p in pairs})
    random.Random(seed).shuffle(prompts)
    held = set(prompts[: round(len(prompts) * holdout)])
    return [p for p in pairs if p.prompt.content_key not in held], [p for p in pairs if p.prompt.content_key in held]


def train_reward_model(pairs_path: Path, config: Config, out: Path, console: Console) -> dict[str, Any]:
    """Train, merge, measure and publish a reward model in ``out``; a finished ``out`` is left as it is."""
    if (out / "manifest.json").is_file():
        console.result(f"nothing to do: {out} already holds a reward model")
        return read_json(out / "manifest.json")
    tracker.check_installed(config.run.report_to)
    sha, pairs = load_pairs(pairs_path)
    base = resolve_base(config.model, console)
    check_lora_targets(base, config.model, config.lora)
    train, held = split_by_prompt(pairs, config.reward_model.holdout, config.run.seed)
    started = time.perf_counter()
    tmp = out / "model.tmp"
    stats, log_history = _train(train, base, config, out / "trainer", tmp, console)
    accuracy = pairwise_accuracy(RewardModelScorer("rm", tmp, config.model.trust_remote_code), held, config.run.seed)
    publish_dir(tmp, out / "model")
    shutil.rmtree(out / "trainer", ignore_errors=True)
    manifest = {
        "version": out.name,
        "kind": "reward-model",
        "created": registry.now(),
        "run_dir": str(out.resolve()),
        "model": "model",  # the merged sequence-classification model: rm:<out>/model
        "base_model": {"name": base.name, "path": str(base.path), "sha256": base.sha256},
        "parent": None,
        "data": {
            "file": str(pairs_path),
            "sha256": sha,
            "pairs": len(pairs),
            "train": len(train),
            "held_out": len(held),
        },
        "config": to_dict(config),
        "packages": registry.package_versions(),
        "budget": {**stats, "seconds": round(time.perf_counter() - started, 1)},
        "evaluation": {"pairwise_accuracy": accuracy},
    }
    write_json(out / "metrics.json", {"train": stats, "held_out": accuracy})
    write_json(out / "manifest.json", manifest)
    tracker.log_training(config.run.report_to, out, log_history)  # after the result is safe
    return manifest


def _train(
    pairs: list[Pair], base: Any, config: Config, scratch: Path, out: Path, console: Console
) -> tuple[dict, list[dict]]:
    """The training's figures, and trl's step logs."""
    from datasets import Dataset
    from peft import PeftModel
    from trl import RewardConfig, RewardTrainer

    from tao.update.grpo import lora_in_fp32_on_cpu, trainer_settings

    if not pairs:
        raise InputError("no training pairs left after the hold-out; lower reward_model.holdout")
    tokenizer = load_tokenizer(base, config.model)
    rows = [
        {
            "chosen": [*p.prompt.chat(), {"role": "assistant", "content": p.chosen}],
            "rejected": [*p.prompt.chat(), {"role": "assistant", "content": p.rejected}],
        }
        for p in pairs
    ]
    rm = config.reward_model
    args = RewardConfig(
        learning_rate=rm.learning_rate,
        num_train_epochs=rm.epochs,
        per_device_train_batch_size=rm.batch_size,
        max_length=config.data.max_prompt_tokens + config.rollout.max_new_tokens,
        **trainer_settings(scratch, config),
    )
    model = _classifier(base.path, tokenizer, config.model.quantize, config.model.dtype)
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_lora_config(config.lora, task_type="SEQ_CLS"),
    )
    lora_in_fp32_on_cpu(trainer.model)
    console.say(f"reward model: {len(pairs)} training pairs x {rm.epochs} epoch(s)")
    trainer.train()
    trainer.model.save_pretrained(scratch / "adapter")
    # merge into a full-precision copy of the base, whatever precision training used
    full = _classifier(base.path, tokenizer, "none", "float32")
    merged = PeftModel.from_pretrained(full, scratch / "adapter").merge_and_unload()
    shutil.rmtree(out, ignore_errors=True)
    merged.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    logs = [e for e in trainer.state.log_history if "loss" in e]
    stats = {
        "pairs": len(pairs),
        "optimizer_steps": trainer.state.global_step,
        "first_loss": logs[0]["loss"] if logs else None,
        "last_loss": logs[-1]["loss"] if logs else None,
        "train_accuracy": logs[-1].get("accuracy") if logs else None,
    }
    return stats, trainer.state.log_history


def _classifier(path: Path, tokenizer: Any, quantize: str, dtype: str) -> Any:
    """The base as a one-output sequence classifier (a new scoring head), loaded like a run's base."""
    from transformers import AutoModelForSequenceClassification

    kwargs = load_kwargs(quantize, dtype)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, use_safetensors=True, **kwargs)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def pairwise_accuracy(scorer: RewardModelScorer, pairs: Sequence[Pair], seed: int = 0) -> dict | None:
    """Share of pairs whose chosen answer scores above the rejected one (ties count half), with an interval."""
    if not pairs:
        return None
    chosen, rejected = _scores(scorer, pairs)
    wins = [1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected, strict=True)]
    return asdict(bootstrap(wins, seed=seed))


def evaluate_reward_model(model_dir: Path, pairs_path: Path, verifier: str | None, config: Config) -> dict:
    """``tao reward eval``: accuracy on the pairs, the score distributions, and agreement with a verifier."""
    scorer = RewardModelScorer("rm", model_dir, config.model.trust_remote_code)
    sha, pairs = load_pairs(pairs_path)
    chosen, rejected = _scores(scorer, pairs)
    result: dict[str, Any] = {
        "pairs": len(pairs),
        "pairs_sha256": sha,
        "accuracy": pairwise_accuracy(scorer, pairs, config.run.seed),
        "chosen": _distribution(chosen),
        "rejected": _distribution(rejected),
    }
    if verifier:
        checker = RewardSet.from_config((verifier,), config)
        prompts = [p.prompt for p in pairs] * 2
        texts = [p.chosen for p in pairs] + [p.rejected for p in pairs]
        truth = checker.totals(
            prompts, [Candidate(p.id, 0, t, (), True, "") for p, t in zip(prompts, texts, strict=True)]
        )
        known = [(s, v) for s, v in zip(chosen + rejected, truth, strict=True) if v is not None]
        result["verifier"] = {
            "spec": verifier,
            "answers_scored": len(known),
            "spearman": spearman([s for s, _ in known], [v for _, v in known]) if len(known) > 2 else None,
        }
    return result


def _scores(scorer: RewardModelScorer, pairs: Sequence[Pair]) -> tuple[list[float], list[float]]:
    prompts = [p.prompt for p in pairs]
    chosen = scorer.score(prompts, [Candidate(p.prompt.id, 0, p.chosen, (), True, "") for p in pairs])
    rejected = scorer.score(prompts, [Candidate(p.prompt.id, 1, p.rejected, (), True, "") for p in pairs])
    return [float(s) for s in chosen], [float(s) for s in rejected]


def _distribution(values: Sequence[float]) -> dict:
    q = np.percentile(values, [5, 25, 50, 75, 95])
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "p5_25_50_75_95": [float(x) for x in q]}


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None when either side is constant."""
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(values: Sequence[float]) -> np.ndarray:
    data = np.asarray(values, dtype=float)
    order = data.argsort(kind="stable")
    ranks = np.empty(len(data))
    ranks[order] = np.arange(len(data))
    for value in np.unique(data):  # ties share their average rank
        ranks[data == value] = ranks[data == value].mean()
    return ranks

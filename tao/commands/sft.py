"""``tao sft``: the supervised baseline, trl's SFTTrainer on labeled answers, same base and LoRA shape as a run.

Labeled lines are ``{"prompt": ..., "completion": "..."}`` (the prompt as in a prompts file: a string, or
``messages``/request-log forms) or ``{"messages": [..., {"role": "assistant", "content": "..."}]}``. The loss is
on the answer only. The output directory holds ``adapter/`` and a ``manifest.json`` with the same lineage fields
as a TAO round, plus the compute budget it spent.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from tao.core.config import Config
from tao.core.config_file import to_dict
from tao.core.console import Console
from tao.core.errors import InputError
from tao.core.model import check_lora_targets, load_base, load_tokenizer, peft_lora_config, resolve_base
from tao.core.prompts import parse_record
from tao.core.records import records
from tao.core.storage import publish_dir, write_json
from tao.core.types import Prompt
from tao.run import registry, tracker
from tao.update.grpo import lora_in_fp32_on_cpu, trainer_settings
from tao.update.lm_head import completion_tokens_only


def load_labeled(path: Path) -> tuple[str, list[tuple[Prompt, str]]]:
    """The file's sha256 and its (prompt, answer) pairs; a bad line is an InputError naming file, line, field."""
    digest = hashlib.sha256()
    examples = []
    for number, obj in records(path, digest):
        messages = obj.get("messages") if isinstance(obj, dict) else None
        if (
            isinstance(messages, list)
            and messages
            and isinstance(messages[-1], dict)
            and messages[-1].get("role") == "assistant"
        ):
            answer, name = messages[-1].get("content"), f"messages[{len(messages) - 1}].content"
            obj = {**obj, "messages": messages[:-1]}
        elif isinstance(obj, dict) and "completion" in obj:
            answer, name = obj.pop("completion"), "completion"
        else:
            raise InputError(
                'no answer: expected "completion", or "messages" ending with the assistant\'s answer',
                file=path,
                line=number,
            )
        if not isinstance(answer, str) or not answer.strip():
            raise InputError("expected a non-empty string", file=path, line=number, field=name)
        examples.append((parse_record(obj, path, number), answer))
    if not examples:
        raise InputError("no labeled examples in file", file=path)
    return digest.hexdigest(), examples


def train_sft(data: Path, config: Config, out: Path, console: Console) -> dict[str, Any]:
    """Train the baseline adapter into ``out``; a finished ``out`` is returned as it is (nothing is redone)."""
    if (out / "manifest.json").is_file():
        console.result(f"nothing to do: {out} already holds a trained adapter")
        return json.loads((out / "manifest.json").read_text())
    tracker.check_installed(config.run.report_to)
    sha, examples = load_labeled(data)
    base = resolve_base(config.model, console)
    check_lora_targets(base, config.model, config.lora)
    started = time.perf_counter()
    stats, log_history = _train(examples, base, config, out / "trainer", out / "adapter.tmp", console)
    publish_dir(out / "adapter.tmp", out / "adapter")
    shutil.rmtree(out / "trainer", ignore_errors=True)
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    manifest = {
        "version": out.name,
        "kind": "sft",
        "created": registry.now(),
        "run_dir": str(out.resolve()),
        "adapter": "adapter",
        "base_model": {"name": base.name, "path": str(base.path), "sha256": base.sha256},
        "parent": None,
        "adapter_shape": {
            "r": adapter_config["r"],
            "lora_alpha": adapter_config["lora_alpha"],
            "target_modules": sorted(adapter_config["target_modules"]),
        },
        "data": {"file": str(data), "sha256": sha, "examples": len(examples)},
        "seed": config.run.seed,
        "config": to_dict(config),
        "packages": registry.package_versions(),
        "budget": {**stats, "seconds": round(time.perf_counter() - started, 1)},
        "timings": {"train": round(time.perf_counter() - started, 1)},
        "evaluation": None,
    }
    write_json(out / "manifest.json", manifest)
    tracker.log_training(config.run.report_to, out, log_history)  # after the result is safe
    return manifest


def _train(
    examples: list[tuple[Prompt, str]], base: Any, config: Config, scratch: Path, adapter: Path, console: Console
) -> tuple[dict[str, Any], list[dict]]:
    """The training's figures, and trl's step logs."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tokenizer = load_tokenizer(base, config.model)
    rows = [{"prompt": p.chat(), "completion": [{"role": "assistant", "content": a}]} for p, a in examples]
    args = SFTConfig(
        learning_rate=config.sft.learning_rate,
        num_train_epochs=config.sft.epochs,
        per_device_train_batch_size=config.sft.batch_size,
        max_length=config.data.max_prompt_tokens + config.rollout.max_new_tokens,
        **trainer_settings(scratch, config),
    )
    trainer = SFTTrainer(
        model=load_base(base, config.model),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_lora_config(config.lora),
    )
    lora_in_fp32_on_cpu(trainer.model)
    console.say(f"sft: {len(examples)} examples x {config.sft.epochs} epoch(s)")
    with completion_tokens_only():
        trainer.train()
    shutil.rmtree(adapter, ignore_errors=True)
    trainer.model.save_pretrained(adapter)
    logs = [e for e in trainer.state.log_history if "loss" in e]
    tokens = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for _, a in examples)
    stats = {
        "optimizer_steps": trainer.state.global_step,
        "examples": len(examples),
        "epochs": config.sft.epochs,
        "answer_tokens_trained": tokens * config.sft.epochs,
        "first_loss": logs[0]["loss"] if logs else None,
        "last_loss": logs[-1]["loss"] if logs else None,
    }
    return stats, trainer.state.log_history

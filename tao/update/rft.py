"""The supervised baseline inside the loop: rejection-sampling fine-tuning (RFT) on the explored candidates.

With ``update.method: rft`` a round's update is trl's SFTTrainer on each group's best-scored candidate instead of
GRPO on its spread of scores: the baseline practitioners try first (best-of-N answers, then fine-tune on them;
expert iteration when repeated over rounds). Exploration, scoring, the groups trained (those whose best and worst
differ by ``update.min_spread``), the optimizer carried between rounds, the evaluation and the wall-clock budget
are the same as GRPO's, so two runs that differ only in ``update.method`` compare the two updates at the same cost.

The loss is on the answer's tokens exactly as they were generated, after the plain prompt's tokens (as GRPO
replays them). Rate, passes and batch are ``sft.learning_rate``, ``sft.epochs`` and ``sft.batch_size``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tao.core.config import Config
from tao.core.console import Console
from tao.update.grpo import Group, has_signal, lora_in_fp32_on_cpu, save_adapter, step_bar, trainer_settings
from tao.update.lm_head import completion_tokens_only
from tao.update.optimizer import OPTIMIZER_FILE, carry_optimizer, save_optimizer

IGNORE = -100  # label of a token the loss leaves out (the prompt's)


def best_answers(groups: Sequence[Group], min_spread: float) -> list[tuple[Group, int]]:
    """Each group with signal, with the index of its best-scored candidate (the first, on a tie)."""
    out = []
    for group in groups:
        if has_signal(group.rewards, min_spread):
            scored = [(r, -i) for i, r in enumerate(group.rewards) if r is not None]
            out.append((group, -max(scored)[1]))
    return out


def rft_update(
    model: Any,
    tokenizer: Any,
    groups: Sequence[Group],
    config: Config,
    scratch: Path,
    console: Console,
    save_to: Path | None = None,
    parent: Path | None = None,
) -> dict[str, Any]:
    """Fine-tune ``model`` (a trainable PeftModel) on each group's best answer; save as grpo_update does."""
    chosen = best_answers(groups, config.update.min_spread)
    stats: dict[str, Any] = {
        "method": "rft",
        "groups_trained": len(chosen),
        "groups_skipped": len(groups) - len(chosen),
        "sequences_trained": len(chosen),
        "mean_reward_trained": sum(g.rewards[i] for g, i in chosen) / len(chosen) if chosen else None,
        "steps": 0,
    }
    if not chosen:
        save_adapter(model, save_to, None)
        return stats
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import SFTConfig, SFTTrainer

    rows = [
        {
            "input_ids": list(g.prompt_ids) + list(g.completions[i]),
            "labels": [IGNORE] * len(g.prompt_ids) + list(g.completions[i]),
        }
        for g, i in chosen
    ]
    args = SFTConfig(
        learning_rate=config.sft.learning_rate,
        num_train_epochs=config.sft.epochs,
        per_device_train_batch_size=config.sft.batch_size,
        max_length=None,  # the sequences were generated within the run's limits
        **trainer_settings(scratch, config),
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    lora_in_fp32_on_cpu(trainer.model)
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(step_bar(console))
    carry = carry_optimizer(model, parent / OPTIMIZER_FILE if parent else None)
    trainer.add_callback(carry)
    with completion_tokens_only():
        trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    stats.update(
        steps=trainer.state.global_step,
        loss=sum(e["loss"] for e in logs) / len(logs) if logs else None,
        optimizer=carry.outcome,
        log=logs,
    )
    save_adapter(model, save_to, None)
    if save_to is not None:
        save_optimizer(model, trainer.optimizer, save_to / OPTIMIZER_FILE)
    return stats

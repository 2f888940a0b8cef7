"""The update: GRPO with trl's GRPOTrainer on the LoRA adapter, trained on the explored candidates.

trl does the RL maths (group-relative advantages, clipped policy loss, KL to the reference). What we add
is the data path: instead of letting trl sample anew, its ``rollout_func`` replays the candidates the
explore stage generated and the score stage scored, so the update learns from exactly what exploration
found (no second generation, no second scoring). Groups whose candidates all scored alike carry no
advantage in GRPO; they are left out of the update and counted.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tao.config import Config
from tao.console import Console
from tao.prompts import Prompt


@dataclass(frozen=True)
class Group:
    """One prompt's scored candidates, as the update consumes them."""

    prompt: Prompt
    prompt_ids: tuple[int, ...]  # the chat-templated prompt, exactly as the candidates were generated from
    completions: tuple[tuple[int, ...], ...]
    rewards: tuple[float | None, ...]


def has_signal(scores: Sequence[float | None]) -> bool:
    """At least two different scores in a group: GRPO's group-relative advantage is not zero everywhere."""
    return len({s for s in scores if s is not None}) >= 2


def _key(chat: list[dict]) -> str:
    return json.dumps([[m["role"], m["content"]] for m in chat], ensure_ascii=False)


class _Replay:
    """trl ``rollout_func`` that serves the stored candidates of each prompt, in order, cycling.

    trl 1.16 hands it each prompt ``num_generations`` times in a row and expects one completion per entry;
    anything else would misalign completions and scores, so it is refused.
    """

    def __init__(self, groups: Sequence[Group]):
        self.groups = {_key(g.prompt.chat()): g for g in groups}
        self.served: defaultdict[str, int] = defaultdict(int)

    def __call__(self, prompts: list, trainer: Any) -> dict[str, list]:
        size = trainer.num_generations
        if len(prompts) % size or any(prompts[i] != prompts[i - i % size] for i in range(len(prompts))):
            raise RuntimeError("trl's rollout_func no longer receives each prompt num_generations times in a row")
        out: dict[str, list] = {"prompt_ids": [], "completion_ids": [], "logprobs": None, "tao_reward": []}
        for chat in prompts:
            key = _key(chat)
            group = self.groups[key]
            j = self.served[key] % len(group.completions)
            self.served[key] += 1
            out["prompt_ids"].append(list(group.prompt_ids))
            out["completion_ids"].append(list(group.completions[j]))
            out["tao_reward"].append(group.rewards[j])
        return out


def tao_reward(prompts: list, completions: list, tao_reward: list, **kwargs: Any) -> list:
    """The score stage's scores: the replay returns them as an extra field, which trl passes to reward functions."""
    return list(tao_reward)


def grpo_update(
    model: Any, tokenizer: Any, groups: Sequence[Group], config: Config, scratch: Path, console: Console
) -> dict[str, Any]:
    """Train ``model`` (a trainable PeftModel) in place on ``groups``; returns what the update measured."""
    useful = [g for g in groups if has_signal(g.rewards)]
    stats: dict[str, Any] = {"groups_trained": len(useful), "steps": 0}
    if not useful:
        return stats
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import GRPOConfig, GRPOTrainer

    per_step = min(config.update.prompts_per_step, len(useful))
    # trl drops an incomplete last batch of prompts: wrap around so that every group with signal is used.
    rows = [{"prompt": g.prompt.chat()} for g in useful]
    rows += rows[: (-len(rows)) % per_step]
    group_size = len(useful[0].completions)
    args = GRPOConfig(
        learning_rate=config.update.learning_rate,
        beta=config.update.beta,
        # Several passes reuse each replayed batch with its log-probs fixed at the first pass (trl's num_iterations),
        # so trl's clipped ratio bounds the later passes; candidates are never generated or replayed again.
        num_iterations=config.update.epochs,
        num_train_epochs=1,
        num_generations=group_size,
        per_device_train_batch_size=group_size,  # one prompt group per micro-batch
        gradient_accumulation_steps=per_step,
        temperature=config.rollout.temperature,  # log-probs are computed at the sampling temperature
        top_p=config.rollout.top_p,
        max_completion_length=config.rollout.max_new_tokens,
        **trainer_settings(scratch, config.run.seed),
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=tao_reward,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        rollout_func=_Replay(useful),
    )
    lora_in_fp32_on_cpu(trainer.model)
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_step_bar(console))
    trainer.train()
    if "ref" in getattr(trainer.model, "peft_config", {}):
        trainer.model.delete_adapter("ref")  # trl's frozen copy of the starting adapter, the KL reference
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    stats.update(
        steps=trainer.state.global_step,
        loss=_mean(logs, "loss"),
        reward=_mean(logs, "reward"),
        kl=_mean(logs, "kl"),
        log=logs,
    )
    return stats


def trainer_settings(scratch: Path, seed: int) -> dict[str, Any]:
    """What every trainer of tao (GRPO, SFT) is given: device and precision, no checkpoints, quiet logs."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "output_dir": str(scratch),
        "gradient_checkpointing": False,  # only costs time at LoRA sizes on one device
        "bf16": cuda and torch.cuda.is_bf16_supported(),
        "use_cpu": not cuda,
        "seed": seed,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 1,
        "disable_tqdm": True,
    }


def lora_in_fp32_on_cpu(model: Any) -> None:
    """trl keeps QLoRA adapters in bf16, which is ~20x slower on CPUs: train them in fp32 there."""
    import torch

    if torch.cuda.is_available():
        return
    for name, param in model.named_parameters():
        if "lora_" in name and param.dtype == torch.bfloat16:
            param.data = param.data.float()


def _mean(logs: list[dict], key: str) -> float | None:
    values = [e[key] for e in logs if isinstance(e.get(key), (int, float))]
    return sum(values) / len(values) if values else None


def _step_bar(console: Console) -> Any:
    """A trainer callback: one progress bar over the optimizer steps, instead of trl's per-step log lines."""
    from transformers import TrainerCallback

    class StepBar(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.bar = console.bar(state.max_steps, "update", unit="step")

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.bar.update(1)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.bar.close()

    return StepBar()

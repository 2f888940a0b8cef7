"""The update: GRPO with trl's GRPOTrainer on the LoRA adapter, trained on the explored candidates.

trl does the RL maths (group-relative advantages, clipped policy loss, KL to the reference). What we add
is the data path: instead of letting trl sample anew, its ``rollout_func`` replays the candidates the
explore stage generated and the score stage scored, so the update learns from exactly what exploration
found (no second generation, no second scoring).

Where the signal is: groups whose candidates all scored (nearly) alike carry no advantage in GRPO; they are
left out and counted. From each remaining group only the ``update.group_size`` candidates whose scores are
most spread are trained on (max-variance down-sampling, as in "Not All Rollouts are Useful", Xu et al. 2025):
on one machine a trained sequence costs about as much as a generated one, so exploring wide and training on
the most contrasted part buys more signal per minute than training on everything.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tao.core import faults, processes
from tao.core.config import Config
from tao.core.console import Console
from tao.core.errors import InputError
from tao.core.model import chat_token_ids
from tao.core.storage import read_jsonl
from tao.core.types import Prompt, Scored
from tao.update.lm_head import completion_tokens_only
from tao.update.optimizer import OPTIMIZER_FILE, carry_optimizer, save_optimizer


@dataclass(frozen=True)
class Group:
    """One prompt's scored candidates, as the update consumes them."""

    prompt: Prompt
    prompt_ids: tuple[int, ...]  # the chat-templated prompt, exactly as the candidates were generated from
    completions: tuple[tuple[int, ...], ...]
    rewards: tuple[float | None, ...]


def has_signal(scores: Sequence[float | None], min_spread: float) -> bool:
    """The group's best and worst scores differ by at least ``min_spread`` (and by something): GRPO's
    group-relative advantage carries more than noise."""
    known = [s for s in scores if s is not None]
    return len(known) >= 2 and max(known) - min(known) >= min_spread and max(known) > min(known)


def most_spread(scores: Sequence[float | None], size: int) -> tuple[int, ...]:
    """Indices of the ``size`` candidates whose scores have the largest variance, in their original order.

    The maximum-variance subset of a sorted list is its k highest and size-k lowest for some k, so trying
    every k is exact. Unscored candidates are taken only when too few are scored. Ties keep the earlier one.
    """
    if size <= 0 or size >= len(scores):
        return tuple(range(len(scores)))
    scored = sorted((i for i, s in enumerate(scores) if s is not None), key=lambda i: (scores[i], i))
    if len(scored) <= size:
        rest = [i for i, s in enumerate(scores) if s is None]
        return tuple(sorted(scored + rest[: size - len(scored)]))
    best: tuple[float, list[int]] = (-1.0, [])
    for k in range(size + 1):
        chosen = scored[len(scored) - k :] if k else []
        chosen = scored[: size - k] + chosen
        variance = float(np.var([scores[i] for i in chosen]))
        if variance > best[0] + 1e-12:
            best = (variance, chosen)
    return tuple(sorted(best[1]))


def select(groups: Sequence[Group], config: Config) -> tuple[list[Group], int]:
    """The groups worth training on, each cut to its most spread candidates; and how many were skipped."""
    kept = []
    for g in groups:
        if not has_signal(g.rewards, config.update.min_spread):
            continue
        keep = most_spread(g.rewards, config.update.group_size)
        kept.append(
            replace(g, completions=tuple(g.completions[i] for i in keep), rewards=tuple(g.rewards[i] for i in keep))
        )
    return kept, len(groups) - len(kept)


class _Replay:
    """trl ``rollout_func`` that serves the stored candidates of each prompt, in order, cycling.

    trl 1.16 hands it each prompt ``num_generations`` times in a row and expects one completion per entry;
    anything else would misalign completions and scores, so it is refused. The dataset's prompts are only keys
    (the prompt's content key as one user turn): the prompt's tokens, chat template and tools applied, are the
    group's own.
    """

    def __init__(self, groups: Sequence[Group]):
        self.groups = {g.prompt.content_key: g for g in groups}
        self.served: defaultdict[str, int] = defaultdict(int)

    def __call__(self, prompts: list, trainer: Any) -> dict[str, list]:
        size = trainer.num_generations
        if len(prompts) % size or any(prompts[i] != prompts[i - i % size] for i in range(len(prompts))):
            raise RuntimeError("trl's rollout_func no longer receives each prompt num_generations times in a row")
        out: dict[str, list] = {"prompt_ids": [], "completion_ids": [], "logprobs": None, "tao_reward": []}
        for chat in prompts:
            key = chat[0]["content"]
            group = self.groups[key]
            j = self.served[key] % len(group.completions)
            self.served[key] += 1
            out["prompt_ids"].append(list(group.prompt_ids))
            out["completion_ids"].append(list(group.completions[j]))
            out["tao_reward"].append(group.rewards[j])
        return out


def read_groups(candidates: Path, prompts: Sequence[Prompt], tokenizer: Any) -> list[Group]:
    """The scored candidates of a round (its candidates.jsonl), one group per prompt, in candidate order."""
    by_prompt: defaultdict[str, list[Scored]] = defaultdict(list)
    for row in read_jsonl(candidates):
        scored = Scored.from_row(row)
        by_prompt[scored.candidate.prompt_id].append(scored)
    groups = []
    for prompt in prompts:
        mine = sorted(by_prompt[prompt.id], key=lambda s: s.candidate.index)
        completions = tuple(s.candidate.token_ids for s in mine)
        prompt_ids = tuple(chat_token_ids(tokenizer, prompt))
        groups.append(Group(prompt, prompt_ids, completions, tuple(s.score.total for s in mine)))
    return groups


def tao_reward(prompts: list, completions: list, tao_reward: list, **kwargs: Any) -> list:
    """The score stage's scores: the replay returns them as an extra field, which trl passes to reward functions."""
    return list(tao_reward)


def grpo_update(
    model: Any,
    tokenizer: Any,
    groups: Sequence[Group],
    config: Config,
    scratch: Path,
    console: Console,
    save_to: Path | None = None,
    parent: Path | None = None,
) -> dict[str, Any]:
    """Train ``model`` (a trainable PeftModel) on ``groups``; with ``save_to``, save its adapter there (process 0
    writes it) with the optimizer's state beside it. With ``parent`` (the adapter the model continues), start from
    the optimizer state saved there. Returns what the update measured."""
    useful, skipped = select(groups, config)
    stats: dict[str, Any] = {
        "groups_trained": len(useful),
        "groups_skipped": skipped,  # no signal: best and worst within update.min_spread
        "sequences_trained": sum(len(g.completions) for g in useful),
        "steps": 0,
    }
    if not useful:
        save_adapter(model, save_to, None)
        return stats
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import GRPOTrainer

    # Under `accelerate launch` each process trains its share of a step's groups (one group per micro-batch).
    world = processes.count()
    accumulate = -(-min(config.update.prompts_per_step, len(useful)) // world)
    per_step = accumulate * world
    # trl drops an incomplete last batch of prompts: wrap around so that every group with signal is used.
    rows = [{"prompt": [{"role": "user", "content": g.prompt.content_key}]} for g in useful]
    rows += (rows * per_step)[: (-len(rows)) % per_step]
    replay = _Replay(useful)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=tao_reward,
        args=grpo_args(config, len(useful[0].completions), accumulate, scratch),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        rollout_func=replay,
    )
    lora_in_fp32_on_cpu(trainer.model)
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(step_bar(console))
    carry = carry_optimizer(model, parent / OPTIMIZER_FILE if parent else None)
    trainer.add_callback(carry)
    if "ref" in getattr(trainer.model, "peft_config", {}):
        # trl's KL reference for a continued adapter is a frozen copy of it: the round's start. Without it trl
        # takes the base model (adapters off), so the KL term holds every round to the base and drift cannot
        # accumulate over the flywheel's rounds.
        trainer.model.delete_adapter("ref")
    resume = last_complete_checkpoint(scratch)  # left by an update that was killed
    with completion_tokens_only():
        trainer.train(resume_from_checkpoint=resume)
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    stats.update(
        resumed_from_step=int(Path(resume).name.split("-")[-1]) if resume else 0,
        steps=trainer.state.global_step,
        loss=_mean(logs, "loss"),
        reward=_mean(logs, "reward"),
        kl=_mean(logs, "kl"),
        optimizer=carry.outcome,
        log=logs,
    )
    save_adapter(model, save_to, trainer if processes.sharded() else None)
    if save_to is not None and processes.is_main():
        save_optimizer(model, trainer.optimizer, save_to / OPTIMIZER_FILE)
    if world > 1:  # who trained what, and whether the processes ended with the same weights
        stats["processes"] = world
        stats["sequences_per_process"] = processes.gather(sum(replay.served.values()))
        if processes.sharded() is None:  # under FSDP / ZeRO-3 each process holds a shard
            stats["adapter_sha256_per_process"] = processes.gather(adapter_digest(model))
    return stats


def last_complete_checkpoint(scratch: Path) -> str | None:
    """The newest checkpoint a killed update left whole, and none of the partial ones. transformers writes
    ``checkpoint-N`` in place and its ``trainer_state.json`` last: a kill or a full disk during a save leaves one
    without it (or with half of it), which its own ``get_last_checkpoint`` would pick and every rerun then fail on.
    Those are removed."""
    if not scratch.is_dir():
        return None
    found = sorted(
        (p for p in scratch.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdecimal()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    for checkpoint in reversed(found):
        try:
            json.loads((checkpoint / "trainer_state.json").read_text())
            return str(checkpoint)
        except (OSError, ValueError):
            shutil.rmtree(checkpoint, ignore_errors=True)
    return None


def grpo_args(config: Config, group_size: int, accumulate: int, scratch: Path) -> Any:
    """trl's GRPOConfig for one round's update: one prompt group per micro-batch, ``accumulate`` groups a step."""
    from trl import GRPOConfig

    settings = {**trainer_settings(scratch, config), **config.update.trl}
    if config.update.checkpoint_steps:
        settings.update(save_strategy="steps", save_steps=config.update.checkpoint_steps, save_total_limit=1)
    return GRPOConfig(
        learning_rate=config.update.learning_rate,
        beta=config.update.beta,
        # Several passes reuse each replayed batch with its log-probs fixed at the first pass (trl's num_iterations),
        # so trl's clipped ratio bounds the later passes; candidates are never generated or replayed again.
        num_iterations=config.update.epochs,
        scale_rewards="group" if config.update.scale_rewards else "none",
        num_train_epochs=1,
        num_generations=group_size,
        per_device_train_batch_size=group_size,  # one prompt group per micro-batch
        gradient_accumulation_steps=accumulate,
        temperature=config.rollout.temperature,  # log-probs are computed at the sampling temperature
        top_p=config.rollout.top_p,
        max_completion_length=config.rollout.max_new_tokens,
        **settings,
    )


def save_adapter(model: Any, path: Path | None, trainer: Any) -> None:
    """The trained adapter, saved once (by process 0). With ``trainer`` (FSDP, ZeRO-3: the weights are in shards)
    every process first takes part in gathering them; under DDP each process holds the same weights already."""
    if path is None:
        return
    state = trainer.accelerator.get_state_dict(trainer.model_wrapped) if trainer else None
    if processes.is_main():
        shutil.rmtree(path, ignore_errors=True)
        model.save_pretrained(path, state_dict=state, selected_adapters=["default"])


def adapter_digest(model: Any) -> str:
    """sha256 of the adapter's weights as they are saved: equal on every process after a data-parallel update."""
    from peft import get_peft_model_state_dict

    return tensors_digest(get_peft_model_state_dict(model, adapter_name="default"))


def tensors_digest(tensors: dict[str, Any]) -> str:
    """sha256 over named tensors (in name order, as float32 bytes)."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def trainer_settings(scratch: Path, config: Config) -> dict[str, Any]:
    """What every trainer of tao (GRPO, SFT, reward model) is given: device and precision, gradient checkpointing,
    no checkpoints, quiet logs."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "output_dir": str(scratch),
        **checkpointing(config.update.gradient_checkpointing, cuda),
        "bf16": cuda and torch.cuda.is_bf16_supported(),
        "use_cpu": not cuda,
        "seed": config.run.seed,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 1,
        "disable_tqdm": True,
    }


def checkpointing(setting: str, cuda: bool) -> dict[str, Any]:
    """Gradient checkpointing as the trainers take it: on with ``on``, or ``auto`` on a CUDA GPU. Non-reentrant, so
    that it works under a frozen base with LoRA adapters (no input needs a gradient)."""
    on = setting == "on" or (setting == "auto" and cuda)
    return {"gradient_checkpointing": on, "gradient_checkpointing_kwargs": {"use_reentrant": False} if on else None}


# GRPOConfig fields tao sets from its own settings: update.trl may not set them.
OWNED = {
    "learning_rate": "update.learning_rate",
    "beta": "update.beta",
    "num_iterations": "update.epochs",
    "scale_rewards": "update.scale_rewards",
    "num_generations": "update.group_size",
    "per_device_train_batch_size": "update.group_size",
    "gradient_accumulation_steps": "update.prompts_per_step",
    "temperature": "rollout.temperature",
    "top_p": "rollout.top_p",
    "max_completion_length": "rollout.max_new_tokens",
    "num_train_epochs": "the round (one pass over its groups)",
    "output_dir": "the round's directory",
    "gradient_checkpointing": "update.gradient_checkpointing",
    "save_strategy": "update.checkpoint_steps",
    "save_steps": "update.checkpoint_steps",
    "seed": "run.seed",
    "report_to": "tao",
    "use_vllm": "rollout.engine (tao generates; trl replays)",
}


def check_trl_settings(fields: dict[str, Any]) -> None:
    """``update.trl``: every name a GRPOConfig field tao does not set itself, every value one GRPOConfig accepts.
    Raises InputError naming the field, before anything is written."""
    import dataclasses
    import tempfile

    from trl import GRPOConfig

    known = {f.name for f in dataclasses.fields(GRPOConfig)}
    for name in fields:
        if name in OWNED:
            raise InputError(f"set by tao from {OWNED[name]}; set that instead", field=f"update.trl.{name}")
        if name not in known:
            raise InputError("not a field of trl's GRPOConfig", field=f"update.trl.{name}")
    with tempfile.TemporaryDirectory() as scratch:
        try:
            GRPOConfig(output_dir=scratch, use_cpu=True, bf16=False, report_to="none", **fields)
        except (TypeError, ValueError) as exc:
            raise InputError(f"trl's GRPOConfig refuses it: {str(exc).splitlines()[0]}", field="update.trl") from None


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


def step_bar(console: Console) -> Any:
    """A trainer callback: one progress bar over the optimizer steps, instead of trl's per-step log lines."""
    from transformers import TrainerCallback

    class StepBar(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.bar = console.bar(state.max_steps, "update", unit="step")

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.bar.update(1)
            faults.point("update")

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.bar.close()

    return StepBar()

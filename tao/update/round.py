"""One round's update, on process 0 and (under ``accelerate launch``) on every other process that joins it."""

from __future__ import annotations

import shutil
from pathlib import Path

from tao.core import processes
from tao.core.config import Config
from tao.core.config_file import load_config
from tao.core.console import Console
from tao.core.model import Policy
from tao.core.storage import publish_dir
from tao.core.types import Prompt
from tao.run.paths import RoundPaths
from tao.run.plan import Plan
from tao.update.grpo import grpo_update, read_groups
from tao.update.rft import rft_update


def update(
    rp: RoundPaths,
    policy: Policy,
    config: Config,
    prompts: tuple[Prompt, ...],
    parent: Path | None,
    seed: int,
    console: Console,
) -> dict:
    """Process 0: order the other processes to join, train, then publish the round's adapter."""
    processes.send({"round": str(rp.dir), "parent": str(parent) if parent else None, "seed": seed})
    stats = train_round(rp, policy, config, prompts, parent, seed, console)
    publish_dir(rp.adapter_tmp, rp.adapter)
    shutil.rmtree(rp.trainer, ignore_errors=True)
    return stats


def train_round(
    rp: RoundPaths,
    policy: Policy,
    config: Config,
    prompts: tuple[Prompt, ...],
    parent: Path | None,
    seed: int,
    console: Console,
) -> dict:
    """The round's update from ``parent`` (GRPO, or RFT with ``update.method: rft``); its adapter is saved to the
    round's temporary adapter path."""
    groups = read_groups(rp.candidates, prompts, policy.tokenizer)
    method = rft_update if config.update.method == "rft" else grpo_update
    with policy.attached(parent, trainable=True, seed=seed) as model:
        stats = method(model, policy.tokenizer, groups, config, rp.trainer, console, rp.adapter_tmp, parent)
    if processes.sharded():  # FSDP / ZeRO-3 wrapped or partitioned the base in place: load it afresh next time
        policy.unload()
    return stats


def follow(policy: Policy, console: Console) -> list[dict]:
    """Processes other than 0 (under ``accelerate launch``): take part in each update process 0 orders."""
    while (order := processes.receive()) is not None:
        rp = RoundPaths(Path(order["round"]))
        parent = Path(order["parent"]) if order["parent"] else None
        train_round(rp, policy, load_config(rp.config), Plan.read(rp).prompts, parent, order["seed"], console)
    return []

"""The TAO loop: rounds of explore -> score -> update -> evaluate -> register.

Each stage writes its artefact atomically, then a small record ``stages/<name>.json`` (its time and
figures). A stage whose record exists is not run again, so the same command after a crash resumes where it
stopped, and a finished run does no work. A round runs with the config it was planned with.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reward.scorer import RewardSet
from rollouts.generator import Candidate, Sampling
from rollouts.transformers_engine import TransformersGenerator, chat_token_ids
from tao import evaluation, pool, registry, report
from tao.config import Config, load_config, to_dict, to_yaml
from tao.console import Console
from tao.errors import InputError
from tao.model import BaseModel, Policy, resolve_base
from tao.paths import RoundPaths, RunPaths
from tao.prompts import Prompt, PromptFile, load_prompts
from tao.storage import locked, publish_dir, read_json, read_jsonl, write_json, write_jsonl, write_text
from tao.training import Group, grpo_update


@dataclass
class Run:
    """What the stages share within one invocation."""

    paths: RunPaths
    prompt_file: PromptFile
    base: BaseModel
    policy: Policy
    console: Console
    rewards: dict[tuple[str, ...], RewardSet]  # built once per distinct scorer list

    def generator(self, model: Any, config: Config) -> TransformersGenerator:
        return TransformersGenerator(model, self.policy.tokenizer, config.rollout.batch_size, self.console)

    def reward_set(self, config: Config) -> RewardSet:
        key = config.reward.scorers
        if key not in self.rewards:
            self.rewards[key] = RewardSet(key, config.model.trust_remote_code)
        return self.rewards[key]


def run(prompts_path: Path, config: Config, run_dir: Path, console: Console) -> list[dict]:
    """Run (or resume) the loop; returns the manifests of the rounds finished by this call."""
    prompt_file = load_prompts(prompts_path)  # every check that can fail on input comes before any write
    rewards = {config.reward.scorers: RewardSet(config.reward.scorers, config.model.trust_remote_code)}
    base = resolve_base(config.model, console)
    paths = RunPaths(run_dir)
    if paths.run.is_file() and read_json(paths.run)["base_model"]["sha256"] != base.sha256:
        raise InputError("this run was started on another base model; use a new --run-dir", file=paths.run)
    ctx = Run(paths, prompt_file, base, Policy(base, config.model, config.lora), console, rewards)
    prompts, too_long = _fitting(ctx, config)
    with locked(paths.lock):
        if not paths.run.is_file():
            write_json(paths.run, {"base_model": _base_row(base), "created": registry.now()})
        write_text(paths.config, to_yaml(config))
        split = _extend_split(paths, [p.id for p in prompts], config)
        console.say(
            f"{len(prompt_file.prompts)} prompts ({prompt_file.duplicates} duplicates dropped, "
            f"{too_long} too long); {len(split.train_ids(p.id for p in prompts))} for training"
        )
        done = []
        pending = [r for r in paths.rounds() if not r.manifest.is_file()]
        if pending:
            done.append(run_round(pending[0], ctx))
        while _rounds_on_file(paths, prompt_file.sha256) < config.run.rounds:
            planned = _plan_round(ctx, config, prompts, split, too_long)
            if planned is None:
                raise InputError("no training prompts (all are held out or too long)", file=prompts_path)
            done.append(run_round(planned, ctx))
        if not done:
            console.result(
                f"nothing to do: {config.run.rounds} round(s) already ran on this prompts file "
                f"({paths.root}); append prompts or raise --rounds to continue"
            )
        return done


def run_round(rp: RoundPaths, ctx: Run) -> dict:
    """The stages of one round, each skipped if its record shows it finished."""
    plan = read_json(rp.plan)
    config = load_config(rp.config)
    if (config.model, config.lora) != (ctx.policy.model_config, ctx.policy.lora):
        raise InputError(
            "this unfinished round was started with other model/lora settings; rerun with its config", file=rp.config
        )
    parent = Path(plan["parent_adapter"]) if plan["parent_adapter"] else None
    prompts = [Prompt.from_row(row) for row in plan["prompts"]]
    eval_prompts = [Prompt.from_row(row) for row in plan["eval_prompts"]]
    rewards = ctx.reward_set(config)
    ctx.console.say(f"round {rp.index}: {len(prompts)} prompts x {config.rollout.num_candidates} candidates")
    base_rows = _baseline(ctx, config, rewards, eval_prompts)
    stats = {
        "explore": _stage(rp, "explore", lambda: explore(rp, ctx, config, prompts, parent, plan["seed"])),
        "score": _stage(rp, "score", lambda: score(rp, ctx, rewards, prompts)),
        "update": _stage(rp, "update", lambda: update(rp, ctx, config, prompts, parent, plan["seed"])),
        "evaluate": _stage(rp, "evaluate", lambda: evaluate(rp, ctx, config, rewards, eval_prompts, base_rows)),
    }
    manifest = registry.register_round(rp, ctx.paths, _lineage(plan, config, ctx, rewards), stats)
    write_text(ctx.paths.report, report.render(ctx.paths))
    ctx.console.result(report.summary_line(rp.index, stats))
    return manifest


def explore(rp: RoundPaths, ctx: Run, config: Config, prompts: list[Prompt], parent: Path | None, seed: int) -> dict:
    r = config.rollout
    sampling = Sampling(r.num_candidates, r.temperature, r.top_p, r.max_new_tokens, seed)
    with ctx.policy.attached(parent) as model:
        candidates = ctx.generator(model, config).generate(prompts, sampling)
    write_jsonl(rp.rollouts, (c.to_row() for c in candidates))
    return {
        "engine": "transformers",
        "policy": str(parent) if parent else "base",
        "sampling": asdict(sampling),
        "candidates": len(candidates),
        "tokens": sum(len(c.token_ids) for c in candidates),
        "finished_share": sum(c.finished for c in candidates) / len(candidates),
    }


def score(rp: RoundPaths, ctx: Run, rewards: RewardSet, prompts: list[Prompt]) -> dict:
    groups: defaultdict[str, list[Candidate]] = defaultdict(list)
    for row in read_jsonl(rp.rollouts):
        groups[row["prompt_id"]].append(Candidate.from_row(row))
    rows = []
    with ctx.console.bar(len(prompts), "score", unit="prompt") as bar:
        for start in range(0, len(prompts), 8):  # whole groups at a time: a scorer may compare a group's candidates
            chunk = prompts[start : start + 8]
            candidates = [c for p in chunk for c in groups[p.id]]
            scores = rewards.score([p for p in chunk for _ in groups[p.id]], candidates)
            rows += [
                {**c.to_row(), "score": s.total, "scores": s.parts} for c, s in zip(candidates, scores, strict=True)
            ]
            bar.update(len(chunk))
    write_jsonl(rp.candidates, rows)
    return report.score_stats(rows)


def update(rp: RoundPaths, ctx: Run, config: Config, prompts: list[Prompt], parent: Path | None, seed: int) -> dict:
    rows: defaultdict[str, list[dict]] = defaultdict(list)
    for row in read_jsonl(rp.candidates):
        rows[row["prompt_id"]].append(row)
    groups = []
    for prompt in prompts:
        mine = sorted(rows[prompt.id], key=lambda r: r["index"])
        completions = tuple(tuple(r["token_ids"]) for r in mine)
        prompt_ids = tuple(chat_token_ids(ctx.policy.tokenizer, prompt))
        groups.append(Group(prompt, prompt_ids, completions, tuple(r["score"] for r in mine)))
    with ctx.policy.attached(parent, trainable=True, seed=seed) as model:
        stats = grpo_update(model, ctx.policy.tokenizer, groups, config, rp.trainer, ctx.console)
        shutil.rmtree(rp.adapter_tmp, ignore_errors=True)
        model.save_pretrained(rp.adapter_tmp, selected_adapters=["default"])
    publish_dir(rp.adapter_tmp, rp.adapter)
    shutil.rmtree(rp.trainer, ignore_errors=True)
    return stats


def evaluate(
    rp: RoundPaths, ctx: Run, config: Config, rewards: RewardSet, prompts: list[Prompt], base_rows: list[dict]
) -> dict:
    if not prompts:
        return {"prompts": 0}
    with ctx.policy.attached(rp.adapter) as model:
        rows = evaluation.evaluate(ctx.generator(model, config), rewards, prompts, config.rollout.max_new_tokens)
    write_jsonl(rp.eval, rows)
    diff = evaluation.paired_difference(base_rows, rows, seed=config.run.seed)
    return {
        "prompts": len(rows),
        "base_mean": evaluation.mean_score(base_rows),
        "mean": evaluation.mean_score(rows),
        "difference": asdict(diff) if diff else None,
    }


def _stage(rp: RoundPaths, name: str, work: Callable[[], dict]) -> dict:
    """Run ``work`` unless its record exists; record its figures and wall time."""
    record = rp.stage(name)
    if record.is_file():
        return read_json(record)
    started = time.perf_counter()
    stats = work()
    stats["seconds"] = round(time.perf_counter() - started, 2)
    write_json(record, stats)
    return stats


def _baseline(ctx: Run, config: Config, rewards: RewardSet, prompts: list[Prompt]) -> list[dict]:
    """Greedy base-model rows for ``prompts``, cached in the run; only missing ones are generated."""
    key = f"{'|'.join(rewards.specs)}|{config.model.quantize}|{config.rollout.max_new_tokens}"
    path = ctx.paths.baseline_eval
    cached = {r["prompt_id"]: r for r in (read_jsonl(path) if path.is_file() else []) if r.get("key") == key}
    missing = [p for p in prompts if p.id not in cached]
    if missing:
        ctx.console.say(f"evaluating the base model on {len(missing)} held-out prompts")
        with ctx.policy.attached(None) as model:
            generator = ctx.generator(model, config)
            for row in evaluation.evaluate(generator, rewards, missing, config.rollout.max_new_tokens):
                cached[row["prompt_id"]] = {**row, "key": key}
        write_jsonl(path, cached.values())
    return [cached[p.id] for p in prompts]


def _plan_round(ctx: Run, config: Config, prompts: list[Prompt], split: pool.Split, too_long: int) -> RoundPaths | None:
    """Choose the next round's prompts and write its plan and config."""
    rounds = ctx.paths.rounds()
    index = rounds[-1].index + 1 if rounds else 1
    used = Counter(p["id"] for r in rounds for p in read_json(r.plan)["prompts"])
    present = [p.id for p in prompts]
    by_id = {p.id: p for p in prompts}
    chosen = pool.pick_round(split.train_ids(present), used, config.data.prompts_per_round, config.run.seed, index)
    if not chosen:
        return None
    rp = ctx.paths.round(index)
    parent = registry.latest_adapter(ctx.paths)
    write_text(rp.config, to_yaml(config))
    write_json(
        rp.plan,
        {
            "round": index,
            "parent_adapter": str(parent) if parent else None,
            "seed": config.run.seed * 1000 + index,
            "prompts_file": str(ctx.prompt_file.path),
            "prompts_sha256": ctx.prompt_file.sha256,
            "prompts_in_file": len(ctx.prompt_file.prompts),
            "duplicates_dropped": ctx.prompt_file.duplicates,
            "too_long_skipped": too_long,
            "holdout": len(split.holdout),
            "prompts": [by_id[i].to_row() for i in chosen],
            "eval_prompts": [by_id[i].to_row() for i in split.eval_ids(present, config.eval.max_prompts)],
        },
    )
    return rp


def _rounds_on_file(paths: RunPaths, sha256: str) -> int:
    return sum(read_json(r.plan)["prompts_sha256"] == sha256 for r, _ in registry.finished_rounds(paths))


def _fitting(ctx: Run, config: Config) -> tuple[list[Prompt], int]:
    """Prompts whose chat-templated length fits ``data.max_prompt_tokens``; the rest are skipped, counted."""
    tokenizer = ctx.policy.tokenizer
    limit = config.data.max_prompt_tokens
    kept = [p for p in ctx.prompt_file.prompts if len(chat_token_ids(tokenizer, p)) <= limit]
    return kept, len(ctx.prompt_file.prompts) - len(kept)


def _extend_split(paths: RunPaths, ids: list[str], config: Config) -> pool.Split:
    state = read_json(paths.split) if paths.split.is_file() else {"seen": [], "holdout": []}
    split = pool.Split(tuple(state["seen"]), tuple(state["holdout"]))
    extended = split.extend(ids, config.data.holdout, config.run.seed)
    if extended != split or not paths.split.is_file():
        write_json(paths.split, {"seen": list(extended.seen), "holdout": list(extended.holdout)})
    return extended


def _lineage(plan: dict, config: Config, ctx: Run, rewards: RewardSet) -> dict:
    return {
        "base_model": _base_row(ctx.base),
        "parent_adapter": plan["parent_adapter"],
        "prompts": {
            "file": plan["prompts_file"],
            "sha256": plan["prompts_sha256"],
            "count": plan["prompts_in_file"],
            "trained": len(plan["prompts"]),
            "held_out": plan["holdout"],
        },
        "scorers": rewards.specs,
        "seed": plan["seed"],
        "config": to_dict(config),
    }


def _base_row(base: BaseModel) -> dict:
    return {"name": base.name, "path": str(base.path), "sha256": base.sha256}

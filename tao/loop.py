"""The TAO loop: rounds of explore -> score -> update -> evaluate -> register.

Each stage writes its artefact atomically, then a small record ``stages/<name>.json`` (its time and
figures). A stage whose record exists is not run again, so the same command after a crash resumes where it
stopped, and a finished run does no work. A round runs with the config it was planned with.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack, closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reward.scorer import RewardSet
from rollouts import exemplars, strategies
from rollouts.choice import choose_engine, open_engine
from rollouts.engine import Engine
from rollouts.transformers_engine import chat_token_ids
from tao import evaluation, guard
from tao.core import faults, processes
from tao.core.config import Config, load_config, replace, to_dict, to_yaml
from tao.core.console import Console
from tao.core.errors import InputError
from tao.core.model import BaseModel, Policy, check_lora_targets, device, gpu_peak, resolve_base
from tao.core.prompts import load_prompts
from tao.core.storage import locked, publish_dir, read_json, read_jsonl, write_json, write_jsonl, write_text
from tao.core.types import Candidate, Prompt, Sampling
from tao.run import budget, registry, report
from tao.run.paths import RoundPaths, RunPaths
from tao.run.plan import Plan, finished_on_file, ingest, open_pool, pending_round, plan_round, scored_rounds
from tao.run.pool import FileVersion, Pool
from tao.update.grpo import grpo_update, read_groups
from tao.update.rft import rft_update

MAX_UNSCORED = 0.5  # above this share of candidates without a score, the round stops: the scorers are broken


@dataclass
class Run:
    """What the stages share within one invocation."""

    paths: RunPaths
    base: BaseModel
    policy: Policy
    console: Console
    rewards: dict[tuple[tuple[str, ...], bool], RewardSet]  # built once per distinct scorer list and gate
    engine: Engine  # chosen by this invocation's rollout.engine; serves every round it runs

    def scorers(self, specs: tuple[str, ...], config: Config, gate: bool = False) -> RewardSet:
        if (specs, gate) not in self.rewards:
            self.rewards[specs, gate] = RewardSet(specs, config.model.trust_remote_code, config.model.name, gate)
        return self.rewards[specs, gate]


def run(prompts_path: Path, config: Config, run_dir: Path, console: Console) -> list[dict]:
    """Run (or resume) the loop; returns the manifests of the rounds finished by this call.

    Under ``accelerate launch`` process 0 runs the loop and the others join its updates (tao/processes.py)."""
    started = time.perf_counter()  # run.minutes counts from here
    processes.start()
    processes.check_launcher(config.model.quantize)
    if not processes.is_main():
        return follow(Policy(resolve_base(config.model, console), config.model, config.lora), Console(quiet=True))
    # Every check of the input (settings, scorers, model, then the prompts) comes before anything is written.
    rewards = {
        (s, g): RewardSet(s, config.model.trust_remote_code, config.model.name, g)
        for s, g in ((config.reward.scorers, config.reward.gate), (config.eval.check, False))
        if s
    }
    strategies.load_strategies(config.rollout.strategies, config.rollout.num_candidates)
    base = resolve_base(config.model, console)
    check_lora_targets(base, config.model, config.lora)
    paths = RunPaths(run_dir)
    if paths.run.is_file() and read_json(paths.run)["base_model"]["sha256"] != base.sha256:
        raise InputError("this run was started on another base model; use a new --run-dir", file=paths.run)
    choice = choose_engine(config, device().type == "cuda")
    processes.check_engine(choice.name)
    policy = Policy(base, config.model, config.lora)
    fits = _fits(policy.tokenizer, config, prompts_path, console)
    existing = paths.lock.is_file()
    with ExitStack() as held:
        if existing:  # a new run directory is made only once its prompts are known to be good
            held.enter_context(locked(paths.lock))
        prompts = held.enter_context(open_pool(paths))
        version = ingest(prompts, prompts_path, config, fits)
        if not existing:
            held.enter_context(locked(paths.lock))
        prompts.settle()
        ctx = Run(paths, base, policy, console, rewards, open_engine(choice, base, policy, config, console))
        held.enter_context(closing(ctx.engine))
        if not paths.run.is_file():
            write_json(paths.run, {"base_model": _base_row(base), "created": registry.now()})
        write_text(paths.config, to_yaml(config))
        train, held_out = prompts.sides()
        console.say(
            f"{version.lines} lines: {version.prompts} prompts ({version.duplicates} duplicates dropped, "
            f"{version.new} new), {train} for training, {held_out} held out; engine: {choice.name} ({choice.reason})"
        )
        done = _rounds(ctx, config, prompts, version, fits, started)
        # The other processes stop waiting. After an error process 0 exits instead, and the launcher stops them
        # (they may be inside a collective of the update, where an order would never arrive).
        processes.send(None)
        return done


def _rounds(
    ctx: Run, config: Config, prompts: Pool, version: FileVersion, fits: Callable[[Prompt], bool], started: float
) -> list[dict]:
    """The unfinished round, then new rounds until this file version has ``run.rounds``, the guard stops, or
    ``run.minutes`` has no room for another round (the last one may take fewer prompts to fit)."""
    done = []
    pending = pending_round(ctx.paths)
    if pending:
        done.append(run_round(pending, ctx))
    while finished_on_file(ctx.paths, version.sha256) < config.run.rounds and not _guard_stops(ctx, config):
        size = budget.next_round_prompts(config, ctx.paths, time.perf_counter() - started)
        if size is None:
            ctx.console.result(f"stopped: no round fits in what is left of run.minutes ({config.run.minutes:g})")
            return done
        planned = replace(config, data={"prompts_per_round": size})  # the round's config records its size
        done.append(run_round(plan_round(ctx.paths, planned, prompts, version, fits), ctx))
    if not done and not _guard_stops(ctx, config):
        ctx.console.result(
            f"nothing to do: {config.run.rounds} round(s) already ran on this prompts file "
            f"({ctx.paths.root}); append prompts or raise --rounds to continue"
        )
    return done


def explore_file(
    prompts_path: Path, config: Config, out: Path, adapter: Path | None, limit: int, console: Console
) -> dict:
    """``tao explore``: explore and score the file's prompts (the first ``limit``; 0 = all), no training.

    Writes the scored candidates to ``out`` (JSONL rows as in a round's candidates.jsonl) and returns the
    score figures, per strategy included."""
    prompt_file = load_prompts(prompts_path)
    rewards = RewardSet(config.reward.scorers, config.model.trust_remote_code, config.model.name, config.reward.gate)
    chosen = strategies.load_strategies(config.rollout.strategies, config.rollout.num_candidates)
    base = resolve_base(config.model, console)
    policy = Policy(base, config.model, config.lora)
    engine = open_engine(choose_engine(config, device().type == "cuda"), base, policy, config, console)
    fits = _fits(policy.tokenizer, config, prompts_path, console)
    prompts = [p for p in prompt_file.prompts if fits(p)]
    prompts = prompts[:limit] if limit else prompts
    r = config.rollout
    sampling = Sampling(r.num_candidates, r.temperature, r.top_p, r.max_new_tokens, config.run.seed)
    with closing(engine):
        candidates, spent = strategies.explore(engine, prompts, chosen, sampling, adapter, rewards.totals)
    by_id = {p.id: p for p in prompts}
    scores = rewards.score([by_id[c.prompt_id] for c in candidates], candidates)
    rows = [{**c.to_row(), "score": s.total, "scores": s.parts} for c, s in zip(candidates, scores, strict=True)]
    write_jsonl(out, rows)
    return {"explore": {"strategies": spent}, "score": report.score_stats(rows, config.update.min_spread)}


def run_round(rp: RoundPaths, ctx: Run) -> dict:
    """The stages of one round, each skipped if its record shows it finished."""
    plan = Plan.read(rp)
    config = load_config(rp.config)
    started_with = (config.model.quantize, config.model.trust_remote_code, config.lora)
    if started_with != (ctx.policy.model_config.quantize, ctx.policy.model_config.trust_remote_code, ctx.policy.lora):
        raise InputError(
            "this unfinished round was started with other model/lora settings; rerun with its config", file=rp.config
        )
    parent = ctx.paths.round(plan.parent_round).adapter if plan.parent_round else None
    rewards = ctx.scorers(config.reward.scorers, config, config.reward.gate)
    ctx.console.say(f"round {rp.index}: {len(plan.prompts)} prompts x {config.rollout.num_candidates} candidates")
    base_rows = _baseline(ctx, config, rewards, plan.eval_prompts)
    stats = {
        "explore": _stage(rp, "explore", lambda: explore(rp, ctx, config, rewards, plan.prompts, parent, plan.seed)),
        "score": _stage(rp, "score", lambda: score(rp, ctx, config, rewards, plan.prompts)),
    }
    rp.rollouts.unlink(missing_ok=True)  # now in candidates.jsonl, with the scores
    ctx.engine.release()  # the update needs the accelerator's memory
    stats["update"] = _stage(rp, "update", lambda: update(rp, ctx, config, plan.prompts, parent, plan.seed))
    prev = ctx.paths.round(plan.parent_round).eval if plan.parent_round else None
    stats["evaluate"] = _stage(
        rp, "evaluate", lambda: evaluate(rp, ctx, config, rewards, plan.eval_prompts, base_rows, prev)
    )
    manifest = registry.register_round(rp, ctx.paths, _lineage(rp, plan, config, ctx, rewards), stats)
    write_text(ctx.paths.report, report.render(ctx.paths))
    ctx.console.result(report.summary_line(rp.index, stats))
    for alarm in stats["evaluate"].get("guard", {}).get("alarms", []):
        ctx.console.warn(f"round {rp.index}: reward-hacking guard: {alarm}")
    return manifest


def explore(
    rp: RoundPaths,
    ctx: Run,
    config: Config,
    rewards: RewardSet,
    prompts: tuple[Prompt, ...],
    parent: Path | None,
    seed: int,
) -> dict:
    r = config.rollout
    sampling = Sampling(r.num_candidates, r.temperature, r.top_p, r.max_new_tokens, seed)
    chosen = strategies.load_strategies(r.strategies, r.num_candidates)
    shown = exemplars.gather(scored_rounds(ctx.paths, rp.index)) if any(s.kind == "exemplars" for s in chosen) else []
    candidates, spent = strategies.explore(ctx.engine, prompts, chosen, sampling, parent, rewards.totals, shown)
    faults.point("explore")
    write_jsonl(rp.rollouts, (c.to_row() for c in candidates))
    return {
        "engine": ctx.engine.name,
        "policy": f"round {rp.index - 1} adapter" if parent else "base model",
        "sampling": asdict(sampling),
        "candidates": len(candidates),
        "tokens": sum(s["tokens"] for s in spent.values()),  # generated, drafts and discarded pools included
        "strategies": spent,
        "finished_share": sum(c.finished for c in candidates) / len(candidates),
    }


def score(rp: RoundPaths, ctx: Run, config: Config, rewards: RewardSet, prompts: tuple[Prompt, ...]) -> dict:
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
            faults.point("score")
    unscored = sum(r["score"] is None for r in rows)
    if unscored > MAX_UNSCORED * len(rows):
        raise InputError(
            f"{unscored} of {len(rows)} candidates got no score (None, NaN or inf from every scorer); "
            "fix the scorers, then run the same command again",
            field="reward.scorers",
        )
    write_jsonl(rp.candidates, rows)
    stats = report.score_stats(rows, config.update.min_spread)
    unparsed = {s.name: s.unparsed for s, _ in rewards.weighted if getattr(s, "unparsed", 0)}
    if unparsed:  # a judge that did not answer in the asked format: those candidates have no opinion from it
        stats["unparsed"] = unparsed
        ctx.console.warn(f"round {rp.index}: judge output not understood for {unparsed} candidate(s); scored None")
    return stats


def update(
    rp: RoundPaths, ctx: Run, config: Config, prompts: tuple[Prompt, ...], parent: Path | None, seed: int
) -> dict:
    processes.send({"round": str(rp.dir), "parent": str(parent) if parent else None, "seed": seed})
    stats = train_round(rp, ctx.policy, config, prompts, parent, seed, ctx.console)
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
    """The round's GRPO update from ``parent``; its adapter is saved to the round's temporary adapter path."""
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


def evaluate(
    rp: RoundPaths,
    ctx: Run,
    config: Config,
    rewards: RewardSet,
    prompts: tuple[Prompt, ...],
    base_rows: list[dict],
    previous_eval: Path | None,
) -> dict:
    if not prompts:
        return {"prompts": 0}
    rows = evaluation.evaluate(ctx.engine, rewards, prompts, config.rollout.max_new_tokens, rp.adapter)
    write_jsonl(rp.eval, rows)
    diff = evaluation.paired_difference(base_rows, rows, seed=config.run.seed)
    # the guard compares with the previous round's answers to the same prompts scored by the same reward, else
    # with the base model's (scored by this round's reward: see _baseline)
    previous = read_jsonl(previous_eval) if previous_eval and previous_eval.is_file() else []
    same_reward = all(r.get("reward") == rewards.identity for r in previous)
    if {r["prompt_id"] for r in previous} != {p.id for p in prompts} or not same_reward:
        previous = base_rows
    check = ctx.scorers(config.eval.check, config) if config.eval.check else None
    stats = {
        "engine": ctx.engine.name,
        "prompts": len(rows),
        "base_mean": evaluation.mean_score(base_rows),
        "mean": evaluation.mean_score(rows),
        "difference": asdict(diff) if diff else None,
        "guard": guard.inspect(prompts, base_rows, previous, rows, check, config.eval.max_length_ratio),
    }
    if check:  # the same answers by the check, against the base's: the figure to believe when the reward is suspect
        base_checked, checked = (evaluation.rescore(r, prompts, check) for r in (base_rows, rows))
        check_diff = evaluation.paired_difference(base_checked, checked, seed=config.run.seed)
        stats["check"] = {
            "scorers": check.specs,
            "base_mean": evaluation.mean_score(base_checked),
            "mean": evaluation.mean_score(checked),
            "difference": asdict(check_diff) if check_diff else None,
        }
    return stats


def _stage(rp: RoundPaths, name: str, work: Callable[[], dict]) -> dict:
    """Run ``work`` unless its record exists; record its figures, wall time and (on a GPU) peak memory."""
    record = rp.stage(name)
    if record.is_file():
        return read_json(record)
    started = time.perf_counter()
    peak: dict = {}
    with gpu_peak(peak):
        stats = work()
    stats["seconds"] = round(time.perf_counter() - started, 2)
    stats.update(peak)
    write_json(record, stats)
    return stats


def _baseline(ctx: Run, config: Config, rewards: RewardSet, prompts: tuple[Prompt, ...]) -> list[dict]:
    """Greedy base-model rows for ``prompts``, cached in the run by what they depend on; only missing ones run."""
    key = f"{rewards.identity}|{config.model.quantize}|{config.rollout.max_new_tokens}|{ctx.engine.name}"
    path = ctx.paths.baseline_eval
    cached = {(r["prompt_id"], r["key"]): r for r in (read_jsonl(path) if path.is_file() else [])}
    missing = [p for p in prompts if (p.id, key) not in cached]
    if missing:
        ctx.console.say(f"evaluating the base model on {len(missing)} held-out prompts")
        for row in evaluation.evaluate(ctx.engine, rewards, missing, config.rollout.max_new_tokens, None):
            cached[row["prompt_id"], key] = {**row, "key": key}
        write_jsonl(path, cached.values())
    return [cached[p.id, key] for p in prompts]


def _guard_stops(ctx: Run, config: Config) -> bool:
    """With ``eval.guard: stop``: the last finished round raised an alarm, so no further round starts."""
    rounds = registry.finished_rounds(ctx.paths)
    if config.eval.guard != "stop" or not rounds or not rounds[-1][1]["evaluation"].get("guard", {}).get("alarms"):
        return False
    best = guard.best_round([(rp.index, m["evaluation"]) for rp, m in rounds])
    ctx.console.result(
        f"stopped: round {rounds[-1][0].index} raised a reward-hacking alarm (eval.guard: stop); the best round by "
        f"the held-out check is round {best} ({ctx.paths.round(best).adapter}). Look at its answers, then rerun with "
        "--set eval.guard=warn to go on."
    )
    return True


def _fits(tokenizer: Any, config: Config, source: Path, console: Console) -> Callable[[Prompt], bool]:
    """Whether a prompt's chat-templated length fits ``data.max_prompt_tokens``. Longer ones, and ones the model's
    chat template refuses (e.g. roles that must alternate; a warning names each), are passed over."""

    def fits(prompt: Prompt) -> bool:
        try:
            return len(chat_token_ids(tokenizer, prompt)) <= config.data.max_prompt_tokens
        except Exception as exc:
            console.warn(f"{source}: the model's chat template refuses prompt {prompt.id!r}, passed over: {exc}")
            return False

    return fits


def _lineage(rp: RoundPaths, plan: Plan, config: Config, ctx: Run, rewards: RewardSet) -> dict:
    adapter_config = json.loads((rp.adapter / "adapter_config.json").read_text())
    return {
        "base_model": _base_row(ctx.base),
        "parent": registry.version(ctx.paths, ctx.paths.round(plan.parent_round)) if plan.parent_round else None,
        "adapter_shape": {
            "r": adapter_config["r"],
            "lora_alpha": adapter_config["lora_alpha"],
            "target_modules": sorted(adapter_config["target_modules"]),
        },
        "prompts": {
            "file": plan.prompts_file,
            "sha256": plan.prompts_sha256,
            "count": plan.prompts_in_file,
            "trained": len(plan.prompts),
            "held_out": plan.held_out,
        },
        "scorers": rewards.specs,
        "seed": plan.seed,
        "config": to_dict(config),
    }


def _base_row(base: BaseModel) -> dict:
    return {"name": base.name, "path": str(base.path), "sha256": base.sha256}

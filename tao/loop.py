"""The TAO loop: rounds of explore -> score -> update -> evaluate -> register.

Each stage writes its artefact atomically, then a small record ``stages/<name>.json`` (its time and
figures). A stage whose record exists is not run again, so the same command after a crash resumes where it
stopped, and a finished run does no work. A round runs with the config it was planned with.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack, closing
from dataclasses import asdict, dataclass
from pathlib import Path

from reward.scorer import RewardSet
from rollouts import exemplars, strategies
from rollouts.choice import choose_engine, open_engine
from rollouts.engine import Engine
from tao import evaluation, guard
from tao.core import faults, processes
from tao.core.config import Config
from tao.core.config_file import load_config, replace, to_yaml
from tao.core.console import Console
from tao.core.errors import InputError
from tao.core.model import BaseModel, Policy, check_lora_targets, device, gpu_peak, prompt_fits, resolve_base
from tao.core.storage import locked, read_json, read_jsonl, sweep_temporary, write_json, write_jsonl, write_text
from tao.core.types import Answer, Candidate, Prompt, Sampling
from tao.run import budget, registry, report, tracker
from tao.run.paths import RoundPaths, RunPaths
from tao.run.plan import Plan, finished_on_file, ingest, open_pool, pending_round, plan_round, scored_rounds
from tao.run.pool import FileVersion, Pool
from tao.update.grpo import check_trl_settings
from tao.update.round import follow, update

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
    log_rounds: Callable[[], None]  # sends registered rounds not yet sent to run.report_to's trackers

    def scorers(self, specs: tuple[str, ...], config: Config, gate: bool = False) -> RewardSet:
        if (specs, gate) not in self.rewards:
            self.rewards[specs, gate] = RewardSet.from_config(specs, config, gate)
        return self.rewards[specs, gate]


def run(prompts_path: Path, config: Config, run_dir: Path, console: Console) -> list[dict]:
    """Run (or resume) the loop; returns the manifests of the rounds finished by this call.

    Under ``accelerate launch`` process 0 runs the loop and the others join its updates (tao/core/processes.py)."""
    started = time.perf_counter()  # run.minutes counts from here
    processes.start()
    processes.check_launcher(config.model.quantize)
    if not processes.is_main():
        return follow(Policy(resolve_base(config.model, console), config.model, config.lora), Console(quiet=True))
    # Every check of the input (settings, scorers, model, then the prompts) comes before anything is written.
    rewards = {
        (s, g): RewardSet.from_config(s, config, g)
        for s, g in ((config.reward.scorers, config.reward.gate), (config.eval.check, False))
        if s
    }
    strategies.load_strategies(config.rollout.strategies, config.rollout.num_candidates)
    if config.update.trl:
        check_trl_settings(config.update.trl)
    tracker.check_installed(config.run.report_to)
    base = resolve_base(config.model, console)
    check_lora_targets(base, config.model, config.lora)
    paths = RunPaths(run_dir)
    if paths.run.is_file() and not base.pinned_by(read_json(paths.run)["base_model"]["sha256"]):
        raise InputError("this run was started on another base model; use a new --run-dir", file=paths.run)
    choice = choose_engine(config, device().type == "cuda")
    processes.check_engine(choice.name)
    policy = Policy(base, config.model, config.lora)
    fits = prompt_fits(policy.tokenizer, config.data.max_prompt_tokens, prompts_path, console)
    existing = paths.lock.is_file()
    with ExitStack() as held:
        if existing:  # a new run directory is made only once its prompts are known to be good
            held.enter_context(locked(paths.lock))
        prompts = held.enter_context(open_pool(paths))
        version = ingest(prompts, prompts_path, config, fits)
        if not existing:
            held.enter_context(locked(paths.lock))
        sweep_temporary(paths.root)  # what a killed writer left; the lock says no other writer is at work
        prompts.settle()
        engine = held.enter_context(closing(open_engine(choice, base, policy, config, console)))
        if not paths.run.is_file():
            write_json(paths.run, {"base_model": registry.base_row(base), "created": registry.now()})
        log_rounds = held.enter_context(tracker.tracking(config.run.report_to, paths))
        ctx = Run(paths, base, policy, console, rewards, engine, log_rounds)
        log_rounds()  # rounds a kill left unsent, or finished before run.report_to was set
        if prompts.skipped or prompts.media:  # records skipped (data.on_invalid: skip), parts the model cannot read
            _report_left_out(paths, version, prompts.skipped, prompts.media, console)
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


def _report_left_out(
    paths: RunPaths, version: FileVersion, skipped: dict[str, dict], media: dict, console: Console
) -> None:
    """Say what the ingest left out, and keep the counts with the run (run.json)."""
    for reason, entry in skipped.items():
        lines = ", ".join(map(str, entry["first_lines"]))
        console.warn(f"{version.path}: {entry['count']} record(s) skipped (lines {lines}...): {reason}")
    if media:
        lines = ", ".join(map(str, media["first_lines"]))
        console.warn(
            f"{version.path}: {media['parts']} image, audio or file part(s) left out of {media['prompts']} "
            f"prompt(s) (lines {lines}...): the model reads the text"
        )
    run = read_json(paths.run)
    if skipped:
        run["skipped"] = {**run.get("skipped", {}), version.sha256: skipped}
    if media:
        run["media_left_out"] = {**run.get("media_left_out", {}), version.sha256: media}
    write_json(paths.run, run)


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
    base = evaluation.baseline(ctx.paths.baseline_eval, ctx.engine, rewards, plan.eval_prompts, config, ctx.console)
    stats = {
        "explore": _stage(rp, "explore", lambda: explore(rp, ctx, config, rewards, plan.prompts, parent, plan.seed)),
        "score": _stage(rp, "score", lambda: score(rp, ctx, config, rewards, plan.prompts)),
    }
    rp.rollouts.unlink(missing_ok=True)  # now in candidates.jsonl, with the scores
    ctx.engine.release()  # the update needs the accelerator's memory
    stats["update"] = _stage(
        rp, "update", lambda: update(rp, ctx.policy, config, plan.prompts, parent, plan.seed, ctx.console)
    )
    previous = ctx.paths.round(plan.parent_round).eval if plan.parent_round else None
    stats["evaluate"] = _stage(rp, "evaluate", lambda: evaluate(rp, ctx, config, rewards, plan, base, previous))
    lineage = registry.round_lineage(rp, ctx.paths, plan, config, ctx.base, rewards.specs)
    manifest = registry.register_round(rp, ctx.paths, lineage, stats)
    write_text(ctx.paths.report, report.render(ctx.paths))
    ctx.log_rounds()
    ctx.console.result(report.summary_line(rp.index, stats))
    for alarm in stats["evaluate"]["guard"]["alarms"]:
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
    candidates, spent = strategies.explore(
        ctx.engine, prompts, chosen, sampling, parent, rewards.totals, shown, rewards.repair
    )
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
    candidates = [Candidate.from_row(row) for row in read_jsonl(rp.rollouts)]
    spent_before = rewards.judge_usage()
    with ctx.console.bar(len(prompts), "score", unit="prompt") as bar:

        def progress(done: int) -> None:
            bar.update(done)
            faults.point("score")

        scored = rewards.score_groups(prompts, candidates, progress)
    unscored = sum(s.score.total is None for s in scored)
    if unscored > MAX_UNSCORED * len(scored):
        raise InputError(
            f"{unscored} of {len(scored)} candidates got no score (None, NaN or inf from every scorer); "
            "fix the scorers, then run the same command again",
            field="reward.scorers",
        )
    write_jsonl(rp.candidates, (s.to_row() for s in scored))
    stats = report.score_stats(scored, config.update.min_spread)
    spent = rewards.judge_usage()
    if spent:  # what a judge at an endpoint was asked this round (a resumed round pays nothing twice: the cache)
        stats["judge"] = {
            name: {k: v - spent_before.get(name, {}).get(k, 0) for k, v in usage.items()}
            for name, usage in spent.items()
        }
    unparsed = rewards.unparsed()
    if unparsed:  # a judge that did not answer in the asked format: those candidates have no opinion from it
        stats["unparsed"] = unparsed
        ctx.console.warn(f"round {rp.index}: judge output not understood for {unparsed} candidate(s); scored None")
    return stats


def evaluate(
    rp: RoundPaths, ctx: Run, config: Config, rewards: RewardSet, plan: Plan, base: list[Answer], previous: Path | None
) -> dict:
    """Greedy answers to the held-out prompts, against the base's; the guard compares them with the previous
    round's (the same prompts scored by the same reward), else with the base's."""
    prompts = plan.eval_prompts
    answers = evaluation.evaluate(ctx.engine, rewards, prompts, config.rollout.max_new_tokens, rp.adapter)
    write_jsonl(rp.eval, (a.to_row() for a in answers))
    before = [Answer.from_row(r) for r in read_jsonl(previous)] if previous and previous.is_file() else []
    if {a.prompt_id for a in before} != {p.id for p in prompts} or any(a.reward != rewards.identity for a in before):
        before = base
    check = ctx.scorers(config.eval.check, config) if config.eval.check else None
    diff = evaluation.paired_difference(base, answers, seed=config.run.seed)
    stats = {
        "engine": ctx.engine.name,
        "prompts": len(answers),
        "base_mean": evaluation.mean_score(base),
        "mean": evaluation.mean_score(answers),
        "difference": asdict(diff) if diff else None,
        "guard": guard.inspect(prompts, base, before, answers, check, config.eval.max_length_ratio),
    }
    if check and answers:  # the same answers by the check, against the base's: the figure to believe
        base_checked, checked = (evaluation.rescore(a, prompts, check) for a in (base, answers))
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
    faults.point("record")  # the stage's artefact is in place, its record not yet
    stats["seconds"] = round(time.perf_counter() - started, 2)
    stats.update(peak)
    write_json(record, stats)
    return stats


def _guard_stops(ctx: Run, config: Config) -> bool:
    """With ``eval.guard: stop``: the last finished round raised an alarm, so no further round starts."""
    rounds = registry.finished_rounds(ctx.paths)
    if config.eval.guard != "stop" or not rounds or not rounds[-1][1]["evaluation"]["guard"]["alarms"]:
        return False
    best = guard.best_round([(rp.index, m["evaluation"]) for rp, m in rounds])
    ctx.console.result(
        f"stopped: round {rounds[-1][0].index} raised a reward-hacking alarm (eval.guard: stop); the best round by "
        f"the held-out check is round {best} ({ctx.paths.round(best).adapter}). Look at its answers, then rerun with "
        "--set eval.guard=warn to go on."
    )
    return True

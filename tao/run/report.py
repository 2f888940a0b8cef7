"""What a run reports: figures of the scored candidates, one line per round, and ``report.md``."""

from __future__ import annotations

from collections.abc import Sequence
from statistics import mean

from tao.core.storage import read_json
from tao.core.types import Scored
from tao.run import registry
from tao.run.paths import RunPaths
from tao.update.grpo import has_signal


def score_stats(scored: Sequence[Scored], min_spread: float) -> dict:
    """Figures of a round's scored candidates: what exploration found (signal: spread >= ``min_spread``)."""
    groups: dict[str, list[float]] = {}
    parts: dict[str, list[float]] = {}
    for s in scored:
        totals = groups.setdefault(s.candidate.prompt_id, [])
        if s.score.total is not None:
            totals.append(s.score.total)
        for name, value in s.score.parts.items():
            parts.setdefault(name, [])
            if value is not None:
                parts[name].append(value)
    totals = [t for g in groups.values() for t in g]
    best = [max(g) for g in groups.values() if g]
    return {
        "candidates": len(scored),
        "unscored": len(scored) - len(totals),
        "mean": mean(totals) if totals else None,
        "per_scorer_mean": {name: mean(v) if v else None for name, v in parts.items()},
        "best_of_group_mean": mean(best) if best else None,
        "groups": len(groups),
        "groups_all_same": sum(len(set(g)) <= 1 for g in groups.values()),
        "groups_with_signal": sum(has_signal(g, min_spread) for g in groups.values()),
        "strategies": strategy_stats(scored, min_spread),
    }


def strategy_stats(scored: Sequence[Scored], min_spread: float) -> dict[str, dict]:
    """Per exploration strategy: what its candidates scored, and whether they gave GRPO something to learn from.

    ``spread_share``: groups in which this strategy's own candidates scored differently (signal, had it made the
    whole group); ``best_share``: groups in which one of its candidates has the group's top score.
    """
    groups: dict[str, list[Scored]] = {}
    for s in scored:
        groups.setdefault(s.candidate.prompt_id, []).append(s)
    out: dict[str, dict] = {}
    for name in sorted({s.candidate.strategy for s in scored}):
        mine = [s for s in scored if s.candidate.strategy == name]
        totals = [s.score.total for s in mine if s.score.total is not None]
        own = {
            pid: [s.score.total for s in g if s.candidate.strategy == name and s.score.total is not None]
            for pid, g in groups.items()
        }
        tops = {
            pid: max((s.score.total for s in g if s.score.total is not None), default=None) for pid, g in groups.items()
        }
        best = [max(v) for v in own.values() if v]
        out[name] = {
            "candidates": len(mine),
            "mean": mean(totals) if totals else None,
            "best_of_group_mean": mean(best) if best else None,
            "spread_share": sum(has_signal(v, min_spread) for v in own.values()) / len(groups),
            "best_share": sum(bool(v) and max(v) == tops[pid] for pid, v in own.items()) / len(groups),
        }
    return out


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _difference(evaluate: dict) -> str:
    diff = evaluate.get("difference")
    if not diff:
        return "n/a"
    return f"{diff['mean']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]"


def summary_line(index: int, stats: dict) -> str:
    score, update, ev = stats["score"], stats["update"], stats["evaluate"]
    seconds = sum(s.get("seconds", 0) for s in stats.values())
    held_out = (
        (
            f"held-out reward {_fmt(ev.get('mean'))} vs base {_fmt(ev.get('base_mean'))}, "
            f"difference {_difference(ev)} (n={ev['prompts']})"
        )
        if ev.get("prompts")
        else "no held-out prompts"
    )
    if ev.get("check"):
        check = ev["check"]
        held_out += (
            f"; check {', '.join(check['scorers'])} {_fmt(check['mean'])} vs base {_fmt(check['base_mean'])}, "
            f"difference {_difference(check)}"
        )
    return (
        f"round {index}: {score['groups']} prompts x {stats['explore']['sampling']['n']} candidates, "
        f"mean reward {_fmt(score['mean'])} (best of group {_fmt(score['best_of_group_mean'])}), "
        f"signal in {score['groups_with_signal']}/{score['groups']} groups, {update['steps']} update steps; "
        f"{held_out}; {_duration(seconds)}"
    )


def strategy_table(metrics: dict) -> list[str]:
    """What each exploration strategy of a round found, and what it cost in generated tokens."""
    found = metrics["score"].get("strategies", {})
    spent = metrics["explore"].get("strategies", {})
    lines = [
        "Exploration of the last round, per strategy (spread: groups where its own candidates scored differently; "
        "best: groups where it holds the top score):",
        "",
        "| strategy | candidates | mean | best of group | spread | best | tokens generated |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, f in found.items():
        tokens = spent.get(name, {}).get("tokens")
        lines.append(
            f"| {name} | {f['candidates']} | {_fmt(f['mean'])} | {_fmt(f['best_of_group_mean'])} "
            f"| {f['spread_share']:.0%} | {f['best_share']:.0%} | {tokens if tokens is not None else 'n/a'} |"
        )
    return lines


def render(paths: RunPaths) -> str:
    """``report.md``: the base model and every finished round at a glance."""
    rounds = registry.finished_rounds(paths)
    run = read_json(paths.run)
    lines = [
        f"# TAO run `{paths.root.name}`",
        "",
        f"Base model: `{run['base_model']['name']}` (sha256 {run['base_model']['sha256'][:12]}).",
        "Rewards are on held-out prompts (greedy answers); the difference to the base is paired per prompt, "
        "with a bootstrap 95% interval.",
        "",
        "| round | prompts (file) | trained | explored mean | best of group | groups with signal "
        "| update steps | held-out mean | base mean | difference [95% CI] | time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rp, manifest in rounds:
        m, p = read_json(rp.metrics), manifest["prompts"]
        seconds = sum(s.get("seconds", 0) for s in m.values())
        lines.append(
            f"| {rp.index} | {p['count']} | {p['trained']} | {_fmt(m['score']['mean'])} "
            f"| {_fmt(m['score']['best_of_group_mean'])} | {m['score']['groups_with_signal']}/{m['score']['groups']} "
            f"| {m['update']['steps']} | {_fmt(m['evaluate']['mean'])} | {_fmt(m['evaluate']['base_mean'])} "
            f"| {_difference(m['evaluate'])} | {_duration(seconds)} |"
        )
    if rounds:
        last = rounds[-1][1]
        plan = read_json(rounds[-1][0].plan)
        metrics = read_json(rounds[-1][0].metrics)
        lines += [
            "",
            f"Prompts file of the last round: `{plan['prompts_file']}`, {plan['prompts_in_file']} unique prompts "
            f"({plan['duplicates_dropped']} exact duplicates dropped, {plan['too_long_skipped']} skipped as too long), "
            f"{plan['held_out']} held out.",
            f"Scorers: {', '.join(last['scorers'])}. Latest adapter: `{paths.root / last['adapter']}`.",
        ]
        timing = ", ".join(f"{k} {_duration(v.get('seconds', 0))}" for k, v in metrics.items())
        lines.append(f"Stage times of the last round: {timing}.")
        score, update = metrics["score"], metrics["update"]
        per = ", ".join(f"{k} {_fmt(v)}" for k, v in score.get("per_scorer_mean", {}).items())
        lines.append(
            f"Explored candidates of the last round, mean per scorer: {per}; groups whose candidates all scored "
            f"the same: {score.get('groups_all_same', 'n/a')}/{score['groups']}; trained groups: "
            f"{update.get('groups_trained')}, skipped for no signal: {update.get('groups_skipped')}."
        )
        alarms = metrics["evaluate"]["guard"]["alarms"]
        if alarms:
            lines.append("**Reward-hacking guard alarms of the last round:** " + "; ".join(alarms) + ".")
        lines += ["", *strategy_table(metrics)]
    return "\n".join(lines) + "\n"

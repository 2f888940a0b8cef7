"""``tao eval`` and ``tao compare``: greedy answers of models on the same items, scored, with intervals.

A model is named by ``base`` (the configured base model), a run directory (its latest finished round), a round
directory, an SFT output directory, or an adapter directory. The items are a prompts file, or a run directory:
its held-out prompts. Every model answers every item with the same greedy
decoding and is scored by the same scorers; the first model listed is the reference for paired differences.
Items may carry ``reference`` (for ``rule:exact`` / ``rule:final_number``) and ``category`` (a string or a list
of strings) fields.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reward.scorer import RewardSet
from rollouts.choice import choose_engine, open_engine
from tao import evaluation
from tao.core.config import Config
from tao.core.console import Console
from tao.core.errors import InputError
from tao.core.model import Policy, device, resolve_base
from tao.core.prompts import load_prompts
from tao.core.storage import write_json, write_jsonl, write_text
from tao.core.types import Answer, Prompt
from tao.run.paths import RunPaths
from tao.run.pool import Pool
from tao.run.registry import finished_rounds


@dataclass(frozen=True)
class ModelSpec:
    label: str  # as given
    adapter: Path | None  # None: the base model itself
    base_sha256: str | None  # the base it was trained on, when its manifest says


def resolve_model(spec: str) -> ModelSpec:
    """``base``, a run dir (latest round), a round dir, an SFT dir, or an adapter dir."""
    if spec == "base":
        return ModelSpec(spec, None, None)
    path = Path(spec).expanduser()
    if (path / "run.json").is_file():
        rounds = finished_rounds(RunPaths(path))
        if not rounds:
            raise InputError("this run has no finished round yet", file=path)
        rp, manifest = rounds[-1]
        return ModelSpec(spec, rp.adapter, manifest["base_model"]["sha256"])
    if (path / "adapter" / "adapter_config.json").is_file():  # a round or an SFT output directory
        manifest = json.loads((path / "manifest.json").read_text()) if (path / "manifest.json").is_file() else {}
        return ModelSpec(spec, path / "adapter", manifest.get("base_model", {}).get("sha256"))
    if (path / "adapter_config.json").is_file():
        return ModelSpec(spec, path, None)
    raise InputError("not 'base', a run, round or SFT directory, or a LoRA adapter directory", file=path)


def evaluate_models(
    specs: list[ModelSpec], prompts_path: Path, scorers: tuple[str, ...], config: Config, console: Console
) -> tuple[list[Prompt], dict[str, list[Answer]]]:
    """Every model's scored greedy answer to every item, by model label."""
    items = held_out_items(prompts_path) if (prompts_path / "run.json").is_file() else None
    items = items if items is not None else list(load_prompts(prompts_path).prompts)
    rewards = RewardSet.from_config(scorers, config)
    base = resolve_base(config.model, console)
    for spec in specs:
        if spec.base_sha256 and not base.pinned_by(spec.base_sha256):
            raise InputError(f"{spec.label} was trained on another base model than --model", field="models")
    policy = Policy(base, config.model, config.lora)
    engine = open_engine(choose_engine(config, device().type == "cuda"), base, policy, config, console)
    prompts = items
    results = {}
    try:
        for spec in specs:
            console.say(f"evaluating {spec.label} on {len(prompts)} items")
            results[spec.label] = evaluation.evaluate(
                engine, rewards, prompts, config.rollout.max_new_tokens, spec.adapter
            )
    finally:
        engine.close()
    return prompts, results


def held_out_items(run_dir: Path) -> list[Prompt]:
    """A run's held-out prompts (every one in its current prompts file), as the run stored them: the items on
    which the run's models can be compared without any of them having trained on one."""
    pool = Pool(RunPaths(run_dir).pool)
    try:
        prompts = pool.eval_prompts(-1, lambda prompt: True)
    finally:
        pool.close()
    if not prompts:
        raise InputError("this run holds no prompt out (data.holdout was 0)", file=run_dir)
    return prompts


def categories(prompts: list[Prompt]) -> dict[str, list[str]]:
    """Each item's ``category`` field (a string or a list), by prompt id."""
    out = {}
    for prompt in prompts:
        value = prompt.metadata.get("category")
        out[prompt.id] = [] if value is None else [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return out


def summarize(
    results: dict[str, list[Answer]], category_of: dict[str, list[str]] | None = None, seed: int = 0
) -> dict[str, Any]:
    """Per model: mean with a bootstrap 95% interval; against the first model: paired difference, wins/ties/losses;
    per category (``category_of``: each item's categories, by prompt id): each model's mean."""
    labels = list(results)
    reference = results[labels[0]]
    out: dict[str, Any] = {"reference": labels[0], "models": {}, "differences": {}, "wins": {}, "categories": {}}
    for label, answers in results.items():
        scored = [a.score for a in answers if a.score is not None]
        out["models"][label] = asdict(evaluation.bootstrap(scored, seed=seed)) if scored else None
        if label == labels[0]:
            continue
        diff = evaluation.paired_difference(reference, answers, seed=seed)
        out["differences"][label] = asdict(diff) if diff else None
        out["wins"][label] = evaluation.wins_ties_losses(reference, answers)
    category_of = category_of or {}
    for name in sorted({c for cats in category_of.values() for c in cats}):
        out["categories"][name] = {
            label: _mean([a.score for a in answers if name in category_of.get(a.prompt_id, [])])
            for label, answers in results.items()
        }
    return out


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def write_report(
    out: Path, summary: dict, results: dict[str, list[Answer]], category_of: dict[str, list[str]], header: dict
) -> None:
    """report.json, report.md, report.png and per-model items (each answer with its item's categories)."""
    for i, (label, answers) in enumerate(results.items()):
        rows = ({"model": label, **a.to_row(), "categories": category_of.get(a.prompt_id, [])} for a in answers)
        write_jsonl(out / f"items-{i}.jsonl", rows)
    write_json(out / "report.json", {**header, **summary})
    write_text(out / "report.md", render(summary, header))
    chart(summary, out / "report.png")


def _interval(v: dict | None, signed: bool = False) -> str:
    if not v:
        return "n/a"
    f = "+.3f" if signed else ".3f"
    return f"{v['mean']:{f}} [{v['low']:{f}}, {v['high']:{f}}]"


def render(summary: dict, header: dict) -> str:
    ref = summary["reference"]
    lines = [
        "# Comparison",
        "",
        f"Items: `{header['prompts']}` ({header['items']}), scored by {', '.join(header['scorers'])}; greedy "
        f"answers, {header['max_new_tokens']} new tokens at most; base model `{header['base_model']}`.",
        "Means with bootstrap 95% intervals; differences are paired per item against "
        f"`{ref}`; wins/ties/losses count items.",
        "",
        f"| model | mean [95% CI] | difference vs {ref} [95% CI] | wins / ties / losses |",
        "|---|---|---|---|",
    ]
    for label, stats in summary["models"].items():
        wins = summary["wins"].get(label)
        record = f"{wins['wins']} / {wins['ties']} / {wins['losses']}" if wins else "-"
        diff = _interval(summary["differences"].get(label), signed=True) if label != ref else "-"
        lines.append(f"| {label} | {_interval(stats)} | {diff} | {record} |")
    lines += ["", *verdicts(summary)]
    if summary["categories"]:
        labels = list(summary["models"])
        lines += ["", "Per category (mean score):", "", "| category | " + " | ".join(labels) + " |"]
        lines.append("|---|" + "---|" * len(labels))
        for name, means in summary["categories"].items():
            cells = ["n/a" if means[label] is None else f"{means[label]:.3f}" for label in labels]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def verdicts(summary: dict) -> list[str]:
    """Who wins against the reference, and by how much: a gain counts only when its 95% interval excludes zero."""
    ref, out = summary["reference"], []
    for label, diff in summary["differences"].items():
        if diff is None:
            out.append(f"- {label}: no item scored by both; no verdict.")
        elif diff["low"] > 0:
            out.append(f"- {label} beats {ref} by {_interval(diff, signed=True)} (the interval excludes zero).")
        elif diff["high"] < 0:
            out.append(f"- {label} is worse than {ref} by {_interval(diff, signed=True)} (the interval excludes zero).")
        else:
            shown = _interval(diff, signed=True)
            out.append(f"- {label} against {ref}: {shown}; no difference shown (the interval holds zero).")
    return out


def chart(summary: dict, path: Path) -> None:
    """Left: each model's mean with its 95% interval. Right: paired differences against the reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def bars(ax: Any, stats: dict[str, dict], title: str) -> None:
        labels = [k for k, v in stats.items() if v]
        means = [stats[k]["mean"] for k in labels]
        low = [m - stats[k]["low"] for k, m in zip(labels, means, strict=True)]
        high = [stats[k]["high"] - m for k, m in zip(labels, means, strict=True)]
        ax.bar(range(len(labels)), means, yerr=[low, high], capsize=6, color="#4C72B0")
        ax.set_xticks(range(len(labels)), [Path(k).name or k for k in labels], rotation=15)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_title(title, fontsize=10)

    panels = 2 if summary["differences"] else 1
    fig, axes = plt.subplots(1, panels, figsize=(max(4, 1.6 * len(summary["models"])) * panels, 3.5), squeeze=False)
    bars(axes[0][0], summary["models"], "mean score (95% CI)")
    if panels == 2:
        bars(axes[0][1], summary["differences"], f"paired difference vs {Path(summary['reference']).name} (95% CI)")
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)

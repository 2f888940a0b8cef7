"""``tao reward train | eval | label``: build the scorer from the little a team has, and measure it first."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tao.cli.options import build_config, config_options, friendly, quiet_libraries


@click.group()
def reward() -> None:
    """Reward models: train one on preference pairs, measure it, make pairs from a checker or a rubric."""


@reward.command()
@click.option("--pairs", "pairs_path", required=True, type=click.Path(path_type=Path), help="Preference pairs JSONL.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output directory.")
@click.option("--model", default=None, help="Base model [default: the embedded SmolLM2].")
@config_options
@click.option("--quiet", is_flag=True)
@friendly
def train(
    pairs_path: Path, out: Path, model: str | None, config_path: Path | None, overrides: tuple, quiet: bool
) -> None:
    """Train a reward model (trl RewardTrainer, LoRA) and report its held-out pairwise accuracy."""
    config = build_config(config_path, overrides, model, (), {})
    quiet_libraries()
    from tao.commands.reward_training import train_reward_model
    from tao.core.console import Console

    manifest = train_reward_model(pairs_path, config, out, Console(quiet))
    acc = manifest["evaluation"]["pairwise_accuracy"]
    held = f"{acc['mean']:.3f} [{acc['low']:.3f}, {acc['high']:.3f}] on {acc['n']} held-out pairs" if acc else "n/a"
    click.echo(
        f"reward model in {out / manifest['model']} (use --reward rm:{out / manifest['model']}); accuracy {held}"
    )


@reward.command(name="eval")
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path), help="Reward model directory.")
@click.option("--pairs", "pairs_path", required=True, type=click.Path(path_type=Path))
@click.option("--verifier", default=None, metavar="SPEC", help="A scorer to compare with (rank correlation).")
@config_options
@friendly
def eval_command(
    model_dir: Path, pairs_path: Path, verifier: str | None, config_path: Path | None, overrides: tuple
) -> None:
    """Pairwise accuracy with a bootstrap interval, score distributions, agreement with a verifier."""
    config = build_config(config_path, overrides, None, (), {})
    quiet_libraries()
    from tao.commands.reward_training import evaluate_reward_model

    result = evaluate_reward_model(model_dir, pairs_path, verifier, config)
    click.echo(json.dumps(result, indent=2))


@reward.command()
@click.option("--rollouts", required=True, type=click.Path(path_type=Path), help="Candidates JSONL (prompt_id, text).")
@click.option("--by", "scorers", multiple=True, required=True, metavar="SPEC[=WEIGHT]", help="Scorer, repeatable.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Pairs JSONL to write.")
@click.option(
    "--prompts",
    "prompts_path",
    type=click.Path(path_type=Path),
    default=None,
    help="The prompts [default: the round's plan.json beside the rollouts].",
)
@click.option("--margin", type=float, default=0.5, show_default=True, help="Least score difference of a pair.")
@click.option("--per-prompt", type=click.IntRange(min=1), default=2, show_default=True, help="Most pairs per prompt.")
@friendly
def label(rollouts: Path, scorers: tuple, out: Path, prompts_path: Path | None, margin: float, per_prompt: int) -> None:
    """Turn scored candidates into preference pairs with a verifier, a judge or a rule (no hand labels)."""
    from reward.pairs import label as make_pairs
    from reward.scorer import RewardSet
    from tao.core.errors import InputError
    from tao.core.prompts import load_prompts
    from tao.core.storage import read_json, read_jsonl, write_jsonl
    from tao.core.types import Prompt

    if prompts_path is not None:
        prompts = {p.id: p for p in load_prompts(prompts_path).prompts}
    elif (rollouts.parent / "plan.json").is_file():
        plan = read_json(rollouts.parent / "plan.json")
        prompts = {r["id"]: Prompt.from_row(r) for r in plan["prompts"] + plan["eval_prompts"]}
    else:
        raise InputError("no plan.json beside it: name the prompts with --prompts", file=rollouts)
    scorer = RewardSet(scorers)
    rows = read_jsonl(rollouts)
    pairs, stats = make_pairs(prompts, rows, scorer, margin, per_prompt)
    write_jsonl(out, pairs)
    click.echo(
        f"{stats['pairs']} pairs from {stats['prompts_with_a_pair']} of {stats['prompts']} prompts "
        f"({stats['candidates']} candidates, {stats['unscored']} without a score); wrote {out}"
    )

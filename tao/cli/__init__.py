"""The ``tao`` command line. Heavy libraries are imported inside commands, so ``tao --help`` is instant."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tao.cli import reward_models as cli_reward
from tao.cli import versions as cli_versions
from tao.cli.options import build_config, config_options, friendly, quiet_libraries
from tao.core.errors import InputError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tao")
def main() -> None:
    """tao: improve a language model from unlabeled prompts (TAO-style).

    Explore many candidate answers per prompt, score them, and train a LoRA adapter with GRPO so the
    model answers better at the same inference cost.
    """


@main.command()
@click.option(
    "--prompts",
    "prompts_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Prompts: JSONL (or .jsonl.gz), CSV, Parquet, or a saved datasets directory.",
)
@click.option("--model", default=None, help="Base model: a local HF model dir or hub id [default: embedded SmolLM2].")
@click.option(
    "--reward",
    "rewards",
    multiple=True,
    metavar="SPEC[=WEIGHT]",
    help="Scorer, repeatable: rule:NAME[:ARG], rm:DIR, module:function, file.py:function.",
)
@click.option("--rounds", type=int, default=None, help="Rounds to run on this prompts file [config: run.rounds].")
@click.option(
    "--minutes",
    type=float,
    default=None,
    help="Stop within this wall-clock budget; the last round shrinks to fit [config: run.minutes].",
)
@click.option(
    "--run-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Run directory [default: runs/<prompts file name>].",
)
@config_options
@click.option("--quiet", is_flag=True, help="No progress bars or messages; only the per-round results.")
@friendly
def run(
    prompts_path: Path,
    model: str | None,
    rewards: tuple[str, ...],
    rounds: int | None,
    minutes: float | None,
    run_dir: Path | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
    quiet: bool,
) -> None:
    """Run the TAO loop on a prompts file (resumes an interrupted or extends a finished run).

    Under `accelerate launch` every process joins the update (docs/SCALING.md)."""
    from tao.run.paths import default_run_dir

    flags = {k: v for k, v in {"rounds": rounds, "minutes": minutes}.items() if v is not None}
    config = build_config(config_path, overrides, model, rewards, {"run": flags} if flags else {})

    quiet_libraries()
    import torch

    from tao.core.console import Console
    from tao.loop import run as run_loop

    if config.run.threads:
        torch.set_num_threads(config.run.threads)
    run_loop(prompts_path, config, run_dir or default_run_dir(prompts_path), Console(quiet))


@main.command()
@click.option("--prompts", "prompts_path", required=True, type=click.Path(path_type=Path), help="JSONL prompts file.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Where to write the scored candidates.")
@click.option("--model", default=None, help="Base model: a local HF model dir or hub id [default: embedded SmolLM2].")
@click.option("--adapter", type=click.Path(path_type=Path), default=None, help="A LoRA adapter dir to explore with.")
@click.option("--reward", "rewards", multiple=True, metavar="SPEC[=WEIGHT]", help="Scorer, repeatable (as in run).")
@click.option("--limit", type=int, default=0, help="Explore only the first N prompts [default: all].")
@config_options
@click.option("--quiet", is_flag=True, help="No progress bars or messages; only the table.")
@friendly
def explore(
    prompts_path: Path,
    out: Path,
    model: str | None,
    adapter: Path | None,
    rewards: tuple[str, ...],
    limit: int,
    config_path: Path | None,
    overrides: tuple[str, ...],
    quiet: bool,
) -> None:
    """Explore and score prompts without training: see what the strategies find before paying for an update."""
    config = build_config(config_path, overrides, model, rewards, {})
    if adapter is not None and not (adapter / "adapter_model.safetensors").is_file():
        raise InputError("no adapter_model.safetensors; tao loads adapters from safetensors only", file=adapter)
    quiet_libraries()
    from tao.commands.explore import explore_file
    from tao.core.console import Console
    from tao.run.report import strategy_table

    figures = explore_file(prompts_path, config, out, adapter, max(limit, 0), Console(quiet))
    score = figures["score"]
    click.echo(
        f"{score['groups']} prompts x {config.rollout.num_candidates} candidates, "
        f"signal in {score['groups_with_signal']}/{score['groups']} groups"
    )
    click.echo("\n".join(strategy_table(figures)[2:]))
    click.echo(f"wrote {out}")


@main.command()
@config_options
@friendly
def doctor(config_path: Path | None, overrides: tuple[str, ...]) -> None:
    """Check this machine: versions, CUDA, bitsandbytes 4-bit, vLLM, and the engine auto takes (exit 1: fix)."""
    from tao.core.config_file import load_config

    config = load_config(config_path, overrides)
    quiet_libraries()
    from tao.commands.doctor import diagnose, render

    findings = diagnose(config)
    click.echo(render(findings))
    sys.exit(0 if all(f.ok for f in findings) else 1)


@main.command()
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Labeled JSONL: prompt + completion.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output directory (adapter, manifest).")
@click.option("--model", default=None, help="Base model: a local HF model dir or hub id [default: embedded SmolLM2].")
@config_options
@click.option("--quiet", is_flag=True, help="No progress messages.")
@friendly
def sft(
    data: Path, out: Path, model: str | None, config_path: Path | None, overrides: tuple[str, ...], quiet: bool
) -> None:
    """Supervised baseline: LoRA SFT on labeled answers, same base and adapter shape as `tao run`."""
    config = build_config(config_path, overrides, model, (), {})
    quiet_libraries()
    from tao.commands.sft import train_sft
    from tao.core.console import Console

    manifest = train_sft(data, config, out, Console(quiet))
    budget = manifest["budget"]
    click.echo(
        f"sft: {budget['examples']} examples, {budget['optimizer_steps']} steps, loss {budget['first_loss']} -> "
        f"{budget['last_loss']}; adapter in {out / manifest['adapter']}"
    )


def _eval_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """What `tao eval` and `tao compare` share: items, scorers, base model, output, config."""
    command = config_options(command)
    for option in reversed(
        [
            click.option(
                "--prompts",
                "prompts_path",
                required=True,
                type=click.Path(path_type=Path),
                help="Items: a prompts file, or a run directory (its held-out prompts).",
            ),
            click.option(
                "--by",
                "scorers",
                multiple=True,
                required=True,
                metavar="SPEC[=WEIGHT]",
                help="Scorer, repeatable (rule:all_instructions, ifeval, rule:exact, rm:DIR, module:function).",
            ),
            click.option("--base", default=None, help="Base model [default: the config's, the embedded SmolLM2]."),
            click.option(
                "--out", type=click.Path(path_type=Path), default=None, help="Output dir [eval|compare/<items>]."
            ),
            click.option("--quiet", is_flag=True, help="No progress messages."),
        ]
    ):
        command = option(command)
    return command


@main.command(name="eval")
@click.option("--model", "model_spec", required=True, help="base, a run / round / SFT directory, or an adapter dir.")
@_eval_options
@friendly
def eval_command(model_spec: str, **kwargs: Any) -> None:
    """Greedy answers of one model on the items, scored; per-item results and a summary."""
    _compare([model_spec], "eval", **kwargs)


@main.command()
@click.argument("models", nargs=-1, required=True)
@_eval_options
@friendly
def compare(models: tuple[str, ...], **kwargs: Any) -> None:
    """Evaluate MODELS (base, run / round / SFT / adapter dirs) on the same items; report with 95% intervals.

    The first model is the reference of the paired differences (usually `base`)."""
    _compare(list(models), "compare", **kwargs)


def _compare(
    models: list[str],
    kind: str,
    prompts_path: Path,
    scorers: tuple[str, ...],
    base: str | None,
    out: Path | None,
    config_path: Path | None,
    overrides: tuple[str, ...],
    quiet: bool,
) -> None:
    config = build_config(config_path, overrides, base, (), {})
    quiet_libraries()
    from tao.commands.compare import categories, evaluate_models, resolve_model, summarize, verdicts, write_report
    from tao.core.console import Console

    specs = [resolve_model(m) for m in models]
    if len({s.label for s in specs}) != len(specs):
        raise InputError("a model is listed twice", field="models")
    prompts, results = evaluate_models(specs, prompts_path, scorers, config, Console(quiet))
    cats = categories(prompts)
    summary = summarize(results, cats, seed=config.run.seed)
    header = {
        "prompts": str(prompts_path),
        "items": len(prompts),
        "scorers": list(scorers),
        "max_new_tokens": config.rollout.max_new_tokens,
        "base_model": config.model.name,
    }
    out = out or Path(kind) / prompts_path.stem  # eval/<items> or compare/<items>
    write_report(out, summary, results, cats, header)
    for label, stats in summary["models"].items():
        diff = summary["differences"].get(label)
        if stats is None:
            click.echo(f"{label}: no item was scored")
            continue
        line = f"{label}: mean {stats['mean']:.3f} [{stats['low']:.3f}, {stats['high']:.3f}] (n={stats['n']})"
        if diff:
            line += f", vs {summary['reference']} {diff['mean']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]"
        click.echo(line)
    for verdict in verdicts(summary):
        click.echo(verdict.removeprefix("- "))
    click.echo(f"wrote {out / 'report.md'}")


main.add_command(cli_versions.models)
main.add_command(cli_versions.export_command)
main.add_command(cli_versions.serve)
main.add_command(cli_versions.chat)
main.add_command(cli_reward.reward)

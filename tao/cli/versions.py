"""``tao models``, ``tao export``, ``tao serve``, ``tao chat``: model versions and getting them into production.

A version is a directory with a manifest (a round of a run, an SFT output) under a versions root, ``--runs``
(default ``runs``). Its name is its path relative to the root, e.g. ``support/round-0002``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from tao.cli.options import friendly, quiet_libraries

RUNS = click.option(
    "--runs", "root", type=click.Path(path_type=Path), default=Path("runs"), show_default=True, help="Versions root."
)


@click.group()
def models() -> None:
    """List, inspect, compare, promote and clean up model versions."""


@models.command(name="list")
@RUNS
@click.option("--json", "as_json", is_flag=True, help="One JSON object per version.")
@friendly
def list_versions(root: Path, as_json: bool) -> None:
    """Every version: kind, base, parent, created, held-out figures, status (candidate/promoted/retired)."""
    from tao.run import registry

    state = registry.read_state(root)
    rows = [_row(v, registry.status(state, v)) for v in registry.discover(root)]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    if not rows:
        click.echo(f"no versions under {root}")
        return
    click.echo("| version | kind | status | base | parent | created | held-out (vs base) | weights |")
    click.echo("|---|---|---|---|---|---|---|---|")
    for r in rows:
        click.echo(
            f"| {r['version']} | {r['kind']} | {r['status']} | {r['base']} | {r['parent'] or '-'} | {r['created']} | "
            f"{r['held_out']} | {'yes' if r['weights'] else 'collected'} |"
        )


@models.command()
@click.argument("version")
@RUNS
@click.option("--json", "as_json", is_flag=True, help="The lineage as JSON.")
@friendly
def show(version: str, root: Path, as_json: bool) -> None:
    """A version's lineage back to the base model: data, scorers, settings, figures, reports it appears in."""
    from tao.run import registry

    v = registry.find(root, version)
    chain = registry.lineage(root, v)
    reports = _reports(root, v)
    if as_json:
        click.echo(json.dumps({"lineage": [c.manifest for c in chain], "reports": reports}, indent=2))
        return
    state = registry.read_state(root)
    for depth, c in enumerate(chain):
        m = c.manifest
        click.echo(f"{'  ' * depth}{c.name} ({c.kind}, {registry.status(state, c)}, created {m.get('created')})")
        pad = "  " * depth + "  "
        click.echo(f"{pad}data: {_data(m)}")
        click.echo(f"{pad}scorers: {', '.join(m.get('scorers', [])) or '-'}")
        click.echo(f"{pad}settings: {_settings(m)}")
        click.echo(f"{pad}held-out: {registry.held_out(m)}")
    base = v.manifest["base_model"]
    click.echo(f"{'  ' * len(chain)}base model {base['name']} ({base['path']}, sha256 {base['sha256'][:12]})")
    for path in reports:
        click.echo(f"in report: {path}")


@models.command()
@click.argument("a")
@click.argument("b")
@RUNS
@friendly
def diff(a: str, b: str, root: Path) -> None:
    """What differs between two versions: config, data, scorers, base, figures."""
    from tao.run import registry

    va, vb = registry.find(root, a), registry.find(root, b)
    left, right = _flat(_comparable(va.manifest)), _flat(_comparable(vb.manifest))
    changed = [k for k in sorted(left.keys() | right.keys()) if left.get(k) != right.get(k)]
    if not changed:
        click.echo(f"{va.name} and {vb.name} differ in nothing but their names and times")
    for key in changed:
        click.echo(f"{key}: {left.get(key, '-')} -> {right.get(key, '-')}")


@models.command()
@click.argument("version")
@click.option("--name", default="default", show_default=True, help="The name an application asks for.")
@RUNS
@friendly
def promote(version: str, name: str, root: Path) -> None:
    """Make VERSION the promoted one for --name (one promoted version per name, recorded with who and when)."""
    from tao.run import registry

    v = registry.find(root, version)
    registry.promote(root, v, name)
    click.echo(f"{name} -> {v.name}")


@models.command()
@click.option("--name", default="default", show_default=True)
@RUNS
@friendly
def rollback(name: str, root: Path) -> None:
    """Point --name back at the version promoted before the current one."""
    from tao.run import registry

    state = registry.rollback(root, name)
    click.echo(f"{name} -> {state['promoted'][name]}")


@models.command()
@click.option("--keep", type=click.IntRange(min=1), default=3, show_default=True, help="Newest versions kept per run.")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@RUNS
@friendly
def gc(keep: int, dry_run: bool, root: Path) -> None:
    """Remove the weights of old, unpromoted versions; their manifests, data and reports stay."""
    from tao.run import registry

    removed = registry.gc(root, keep, dry_run)
    verb = "would remove" if dry_run else "removed"
    for v in removed:
        click.echo(f"{verb} the weights of {v.name}")
    click.echo(f"{len(removed)} version(s); promoted versions and the {keep} newest of each run are kept")


@click.command(name="export")
@click.argument("version")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Directory to create.")
@click.option("--merge", is_flag=True, help="A full model (base + adapter, safetensors) instead of an adapter.")
@click.option(
    "--dtype",
    type=click.Choice(["base", "float32", "bfloat16", "float16"]),
    default="base",
    show_default=True,
    help="The merged model's precision: the base's own, or another.",
)
@RUNS
@friendly
def export_command(version: str, out: Path, merge: bool, dtype: str, root: Path) -> None:
    """Export a version for serving: a peft adapter (vLLM --lora-modules) or a merged model, with a model card."""
    from tao.run import registry

    quiet_libraries()
    from tao.commands.export import export

    v = registry.find(root, version)
    click.echo(f"wrote {export(root, v, out, merge, dtype)} ({'merged model' if merge else 'adapter'}, README.md card)")


@click.command()
@click.argument("version")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (localhost only by default).")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--builtin", is_flag=True, help="The built-in transformers server even where vLLM could run.")
@RUNS
@friendly
def serve(version: str, host: str, port: int, builtin: bool, root: Path) -> None:
    """An OpenAI-compatible endpoint for VERSION: vLLM's server on a GPU, else a small built-in one."""
    import os

    from tao.run import registry

    v = registry.find(root, version)
    quiet_libraries()
    from rollouts.choice import vllm_problem
    from tao.commands.serve import load, make_server, model_id, vllm_command
    from tao.core.console import Console
    from tao.core.model import device

    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"tao: warning: binding to {host}: anyone who can reach it can query the model", err=True)
    cuda = device().type == "cuda"
    if not builtin and cuda and vllm_problem("none", cuda) is None:
        command = vllm_command(v, host, port)
        click.echo(f"starting vLLM: {' '.join(command)}", err=True)
        os.execvp(command[0], command)
    server = make_server(load(v, Console(quiet=True)), host, port)
    click.echo(f"serving {v.name} as model {model_id(v)!r} at http://{host}:{server.server_port}/v1 (built-in)")
    try:
        server.serve_forever()
    finally:
        server.server_close()


@click.command()
@click.argument("version")
@RUNS
@friendly
def chat(version: str, root: Path) -> None:
    """A quick terminal conversation with VERSION (greedy answers; an empty line ends it)."""
    from tao.run import registry

    v = registry.find(root, version)
    quiet_libraries()
    from tao.commands.serve import chat as talk
    from tao.commands.serve import load
    from tao.core.console import Console

    console = Console(quiet=True)
    talk(load(v, console), console)


def _row(v: Any, status: str) -> dict:
    from tao.run import registry

    m = v.manifest
    return {
        "version": v.name,
        "kind": v.kind,
        "status": status,
        "base": m["base_model"]["name"],
        "parent": m.get("parent"),
        "created": m.get("created"),
        "held_out": registry.held_out(m),
        "weights": v.has_weights,
        "dir": str(v.dir),
    }


def _data(m: dict) -> str:
    if "prompts" in m:
        p = m["prompts"]
        return f"{p['file']} (sha256 {p['sha256'][:12]}, {p['count']} prompts, {p['trained']} trained this round)"
    d = m.get("data", {})
    return f"{d.get('file')} (sha256 {str(d.get('sha256'))[:12]}, {d.get('examples')} labeled examples)"


def _settings(m: dict) -> str:
    c = m.get("config", {})
    keys = ("update.learning_rate", "update.group_size", "rollout.num_candidates", "rollout.strategies", "lora.rank")
    flat = _flat(c)
    return ", ".join(f"{k}={flat[k]}" for k in keys if k in flat)


def _comparable(m: dict) -> dict:
    return {k: v for k, v in m.items() if k not in ("version", "created", "run_dir", "timings", "packages")}


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


def _reports(root: Path, v: Any) -> list[str]:
    """`tao compare` reports under the root that evaluated this version (its dir, its adapter, or its run)."""
    from tao.run import registry

    mine = {v.dir.resolve(), v.adapter.resolve()}
    latest = [x for x in registry.discover(root) if x.kind == "tao-round" and x.dir.parent == v.dir.parent]
    if v.kind == "tao-round" and latest and latest[-1].dir == v.dir:
        mine.add(v.dir.parent.resolve())
    found = []
    for report in sorted(root.rglob("report.json")):
        try:
            labels = json.loads(report.read_text()).get("models", {})
        except (OSError, ValueError, AttributeError):
            continue
        if any(Path(label).expanduser().resolve() in mine for label in labels if label != "base"):
            found.append(str(report))
    return found

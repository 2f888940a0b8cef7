"""Model versions: each finished round registers its adapter with a manifest of its lineage."""

from __future__ import annotations

import importlib.metadata
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tao.paths import RoundPaths, RunPaths
from tao.storage import read_json, write_json

PACKAGES = ("tao", "torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "datasets", "numpy")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def register_round(paths: RoundPaths, run: RunPaths, lineage: dict[str, Any], metrics: dict[str, Any]) -> dict:
    """Write the round's metrics, then its manifest (the mark that the round is finished)."""
    write_json(paths.metrics, metrics)
    manifest = {
        "version": f"{run.root.name}/{paths.dir.name}",
        "kind": "tao-round",
        "created": now(),
        "adapter": str(paths.adapter),
        **lineage,
        "packages": package_versions(),
        "timings": {stage: figures.get("seconds") for stage, figures in metrics.items()},
        "metrics": metrics,
    }
    write_json(paths.manifest, manifest)
    return manifest


def finished_rounds(run: RunPaths) -> list[tuple[RoundPaths, dict]]:
    """Rounds with a manifest, in order."""
    return [(r, read_json(r.manifest)) for r in run.rounds() if r.manifest.is_file()]


def latest_adapter(run: RunPaths) -> Path | None:
    done = finished_rounds(run)
    return done[-1][0].adapter if done else None

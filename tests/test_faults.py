"""A real `tao run` process killed with SIGKILL in the middle of each stage: the rerun finishes the round,
does not redo the stages that had finished, and ends with what an uninterrupted run makes (same seed)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tao.core.faults import POINTS
from tao.core.storage import TMP_MARK
from tao.run.paths import RunPaths
from tests.conftest import TINY, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("explore", "score", "update", "evaluate")


def tao_run(prompts: Path, model: Path, run_dir: Path, kill_at: str = "", *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "tao.cli", "run", "--prompts", str(prompts), "--model", str(model)]
    command += ["--run-dir", str(run_dir), "--quiet", *[a for s in TINY for a in ("--set", s)], *extra]
    env = {**os.environ, "TAO_KILL_AT": kill_at}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def snapshot(run_dir: Path) -> dict[str, tuple[int, bytes]]:
    """Every file of the run with its modification time and content."""
    return {
        str(p.relative_to(run_dir)): (p.stat().st_mtime_ns, p.read_bytes()) for p in run_dir.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def setting(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    prompts = write_jsonl(root / "logs.jsonl", [{"prompt": f"say something {i}", "id": f"p{i}"} for i in range(8)])
    result = tao_run(prompts, tiny_model, root / "reference")
    assert result.returncode == 0, result.stderr
    return prompts, tiny_model, RunPaths(root / "reference").round(1)


@pytest.mark.parametrize("point", POINTS)
def test_a_kill_loses_at_most_the_stage_in_progress(setting, tmp_path, point):
    prompts, model, reference = setting
    run_dir = tmp_path / "run"
    killed = tao_run(prompts, model, run_dir, point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    rp = RunPaths(run_dir).round(1)
    finished = [s for s in STAGES if rp.stage(s).is_file()]
    assert finished == list(STAGES[: STAGES.index(point)] if point in STAGES else STAGES)
    assert not rp.manifest.exists() and not any(
        p.name.startswith(".") and ".tmp-" in p.name for p in run_dir.rglob("*")
    )
    before = snapshot(run_dir)

    resumed = tao_run(prompts, model, run_dir)
    assert resumed.returncode == 0, resumed.stderr
    after = snapshot(run_dir)
    for stage in finished:  # a finished stage is not run again: its record and artefact are untouched
        name = str(rp.stage(stage).relative_to(run_dir))
        assert after[name] == before[name]
    if "score" in finished:
        name = str(rp.candidates.relative_to(run_dir))
        assert after[name] == before[name]
    # and the result is the uninterrupted run's: same candidates, same adapter weights
    assert rp.candidates.read_bytes() == reference.candidates.read_bytes()
    mine, theirs = (load_file(p.adapter / "adapter_model.safetensors") for p in (rp, reference))
    assert mine.keys() == theirs.keys()
    assert all((mine[k] - theirs[k]).abs().max() <= 1e-6 for k in mine)
    assert rp.manifest.is_file()


def visible_files_are_whole(run_dir: Path) -> None:
    """Every JSON and JSONL file a reader can see parses: nothing half-written is in place."""
    for p in run_dir.rglob("*"):
        if p.is_file() and TMP_MARK not in p.name and ".adapter.tmp" not in p.parts:
            if p.suffix == ".json":
                json.loads(p.read_text())
            elif p.suffix == ".jsonl":
                [json.loads(line) for line in p.read_text().splitlines() if line]


# Inside the saves (tao/core/faults.py WRITE_POINTS): of a tiny round's 16 file writes, an early, a middle and a late
# one (between the synced temporary copy and the rename); an adapter's publish; the update's artefact in place
# before its stage record; the ingest, after 5 of 8 prompts went into the pool.
@pytest.mark.parametrize("kill_at", ["write:3", "write:9", "write:15", "publish", "record:3", "ingest:5"])
def test_a_kill_inside_a_save_leaves_no_half_file_and_a_rerun_ends_as_an_uninterrupted_run(setting, tmp_path, kill_at):
    prompts, model, reference = setting
    run_dir = tmp_path / "run"
    killed = tao_run(prompts, model, run_dir, kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    visible_files_are_whole(run_dir)
    resumed = tao_run(prompts, model, run_dir)
    assert resumed.returncode == 0, resumed.stderr
    rp = RunPaths(run_dir).round(1)
    assert rp.manifest.is_file() and not rp.adapter_tmp.exists() and not rp.trainer.exists()
    assert not [p for p in run_dir.rglob(f"*{TMP_MARK}*")]  # the rerun swept what the kill left
    assert rp.candidates.read_bytes() == reference.candidates.read_bytes()
    mine, theirs = (load_file(p.adapter / "adapter_model.safetensors") for p in (rp, reference))
    assert mine.keys() == theirs.keys() and all((mine[k] - theirs[k]).abs().max() <= 1e-6 for k in mine)
    assert len(json.loads(rp.plan.read_text())["prompts"]) == len(json.loads(reference.plan.read_text())["prompts"])


def test_sigterm_stops_cleanly_and_says_how_to_resume(setting, tmp_path):
    prompts, model, _ = setting
    command = [sys.executable, "-m", "tao.cli", "run", "--prompts", str(prompts), "--model", str(model)]
    command += ["--run-dir", str(tmp_path / "run"), *[a for s in TINY for a in ("--set", s)]]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rp = RunPaths(tmp_path / "run").round(1)
    for _ in range(600):  # wait until the round has started, then stop it
        if rp.plan.is_file() or proc.poll() is not None:
            break
        subprocess.run(["sleep", "0.05"])
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the round finished before the signal arrived")
    assert proc.returncode == 143 and "stopped" in err and "run the same command again to resume" in err
    assert "Traceback" not in err and not rp.manifest.exists()
    assert tao_run(prompts, model, tmp_path / "run").returncode == 0 and rp.manifest.is_file()


def test_a_killed_update_resumes_from_its_last_checkpoint(setting, tmp_path):
    """With a KL term, so that trl's reference adapter is in the checkpoint too."""
    prompts, model, _ = setting
    sets = ("--set", "update.prompts_per_step=1", "--set", "update.checkpoint_steps=1", "--set", "update.beta=0.02")
    reference = tao_run(prompts, model, tmp_path / "reference", "", *sets)
    assert reference.returncode == 0, reference.stderr
    killed = tao_run(prompts, model, tmp_path / "run", "update:3", *sets)  # after step 2 was saved
    assert killed.returncode == -signal.SIGKILL
    rp = RunPaths(tmp_path / "run").round(1)
    assert sorted(p.name for p in rp.trainer.glob("checkpoint-*")) == ["checkpoint-2"]
    assert tao_run(prompts, model, tmp_path / "run", "", *sets).returncode == 0
    update = json.loads(rp.stage("update").read_text())
    ref_update = json.loads(RunPaths(tmp_path / "reference").round(1).stage("update").read_text())
    assert update["resumed_from_step"] == 2 and update["steps"] == ref_update["steps"] >= 3
    mine = load_file(rp.adapter / "adapter_model.safetensors")
    theirs = load_file(RunPaths(tmp_path / "reference").round(1).adapter / "adapter_model.safetensors")
    assert all((mine[k] - theirs[k]).abs().max() <= 1e-6 for k in mine)
    assert not rp.trainer.exists()  # the checkpoints go once the adapter is published


def test_sigterm_inside_a_scorer_stops_the_run_with_143(tiny_model, prompts_file, tmp_path):
    """A handler that catches Exception (the user function's wrapper) must not swallow the stop."""
    from tests.test_loop import tao_run

    result = tao_run(prompts_file, tiny_model, tmp_path / "run", "--reward", "tests.rewards:terminated", catch=True)
    assert result.exit_code == 143, result.output
    assert "stopped (SIGTERM); run the same command again to resume" in result.output
    assert not (tmp_path / "run" / "round-0001" / "stages" / "score.json").exists()


@pytest.mark.parametrize("limit", [40_000, 300_000], ids=["early writes", "inside the update's checkpoint"])
def test_a_full_disk_is_one_line_exit_2_and_a_rerun_completes(setting, tiny_model, tmp_path, limit):
    """A file-size limit stands in for a full disk (writes fail with EFBIG, as with ENOSPC); SQLite, safetensors and
    torch's zip writer report it without an OSError. Nothing half-written blocks the rerun once there is room."""
    import resource

    prompts = setting[0]
    command = [sys.executable, "-m", "tao.cli", "run", "--prompts", str(prompts), "--model", str(tiny_model)]
    command += ["--run-dir", str(tmp_path / "run"), "--quiet", *[a for s in TINY for a in ("--set", s)]]

    def capped():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    full = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=capped)
    assert full.returncode == 2, full.stderr[-2000:]
    assert (
        full.stderr.strip().splitlines()[-1].startswith("tao: error: the disk is full")
        and "Traceback" not in full.stderr
    )
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert RunPaths(tmp_path / "run").round(1).manifest.is_file()


def test_a_failed_write_removes_its_temporary_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    from tao.core import storage

    target = tmp_path / "record.json"
    storage.write_json(target, {"old": 1})

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage.os, "replace", full_disk)
    with pytest.raises(OSError):
        storage.write_json(target, {"new": 2})
    assert json.loads(target.read_text()) == {"old": 1} and [p.name for p in tmp_path.iterdir()] == ["record.json"]

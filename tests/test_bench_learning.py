"""scripts/bench_learning.py runs its two arms on one core each side by side, or in turn on the whole machine."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_learning", ROOT / "scripts" / "bench_learning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _args(threads: int) -> argparse.Namespace:
    return argparse.Namespace(
        budgets="60", heldout=64, seed=5, model="default", threads=threads, extra=["run.seed=5"], tao_scorers="x"
    )


class _Done:
    def __init__(self, command: list[str], env: dict, cwd: Path, check: bool = False) -> None:
        self.command, self.env = command, env

    def wait(self) -> int:
        return 0


def test_arms_with_one_thread_run_side_by_side_pinned_to_their_own_core(bench, monkeypatch, tmp_path):
    started: list[_Done] = []
    monkeypatch.setattr(subprocess, "Popen", lambda c, env, cwd: started.append(_Done(c, env, cwd)) or started[-1])
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("one thread: the arms must not run in turn"))
    bench.run_arms(_args(1), tmp_path)
    assert [p.command[:3] for p in started] == [["taskset", "-c", "0"], ["taskset", "-c", "1"]]
    assert [p.command[-1] for p in started] == ["plain", "tao"]
    assert all(p.env["OMP_NUM_THREADS"] == "1" and "--threads" in p.command for p in started)


def test_arms_with_more_threads_run_one_after_the_other_unpinned(bench, monkeypatch, tmp_path):
    ran: list[_Done] = []
    monkeypatch.setattr(subprocess, "run", lambda c, env, cwd, check: ran.append(_Done(c, env, cwd, check)))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("more threads: no arm runs beside another"))
    bench.run_arms(_args(2), tmp_path)
    assert [p.command[-1] for p in ran] == ["plain", "tao"]
    assert all("taskset" not in p.command and p.env["OMP_NUM_THREADS"] == "2" for p in ran)
    assert all(p.command[p.command.index("--threads") + 1] == "2" for p in ran)


def test_the_result_says_how_the_arms_ran_not_how_the_evaluation_was_called(bench, tmp_path):
    bench.record_arm(tmp_path, "tao", 2)
    (tmp_path / "machine-plain.json").write_text('{"threads": 1, "cores": 1}')
    cores = len(os.sched_getaffinity(0))
    expected = f"plain arm: 1 torch thread(s) on 1 core(s); tao arm: 2 torch thread(s) on {cores} core(s)"
    assert bench.arms_ran(tmp_path) == expected


def test_a_pinned_arm_records_the_one_core_it_may_use(bench, tmp_path):
    script = ROOT / "scripts" / "bench_learning.py"
    code = "import os, pathlib, runpy, sys; os.sched_setaffinity(0, {0}); "
    code += "runpy.run_path(sys.argv[1])['record_arm'](pathlib.Path(sys.argv[2]), 'plain', 1)"
    subprocess.run([sys.executable, "-c", code, str(script), str(tmp_path)], check=True, cwd=ROOT)
    assert bench.arms_ran(tmp_path) == "plain arm: 1 torch thread(s) on 1 core(s)"


def test_nothing_recorded_is_said_so_not_guessed(bench, tmp_path):
    assert bench.arms_ran(tmp_path) == "how the arms ran was not recorded"


def test_the_tao_arm_runs_with_the_threads_asked_for(bench):
    from tao.config import load_config

    sets = [s.format(guides="configs/instruction-guides.txt", threads=2) for s in bench.TAO_SETTINGS]
    assert load_config(None, sets).run.threads == 2

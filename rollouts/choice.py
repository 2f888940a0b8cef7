"""Which generation engine a run uses, and why: ``rollout.engine`` is auto, vllm, transformers or vllm-server."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from rollouts.engine import Engine
from tao.core.config import Config
from tao.core.console import Console
from tao.core.errors import InputError
from tao.core.model import BaseModel, Policy

INSTALL_GPU = "pip install 'tao[vllm]'"
INSTALL_CPU = "scripts/install_vllm_cpu.sh"


@dataclass(frozen=True)
class EngineChoice:
    name: str  # "vllm", "transformers" or "vllm-server"
    reason: str  # one line, for the run log and `tao doctor`


def vllm_problem(quantize: str, cuda: bool) -> str | None:
    """Why vLLM cannot serve here (one line with the fix), or None when it can. Imports vLLM (seconds)."""
    if importlib.util.find_spec("vllm") is None:
        return f"vLLM is not installed ({INSTALL_GPU} on a GPU machine, {INSTALL_CPU} on a CPU machine)"
    try:
        from vllm.platforms import current_platform
    except Exception as exc:  # a broken install: wrong torch, CUDA-only torchvision on a CPU machine, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"vLLM is installed but does not import ({first}); see README, 'Versions'"
    build = "cpu" if current_platform.is_cpu() else str(current_platform.device_type or "unknown")
    if cuda and build == "cpu":
        return f"the installed vLLM is the CPU build (vllm-cpu) but this machine has a GPU: {INSTALL_GPU}"
    if not cuda and build != "cpu":
        return f"the installed vLLM is a GPU build ({build}) and there is no GPU here: {INSTALL_CPU}"
    if not cuda and quantize == "nf4":
        return "vLLM's CPU build cannot serve a bitsandbytes 4-bit base (model.quantize=nf4)"
    return None


def gpu_count() -> int:
    """CUDA GPUs on this machine."""
    import torch

    return torch.cuda.device_count()


def check_tensor_parallel(size: int) -> None:
    """``rollout.tensor_parallel_size`` GPUs must be there: an input error before anything starts."""
    if size > 1 and (found := gpu_count()) < size:
        raise InputError(
            f"{size} GPUs asked for tensor parallelism, {found} CUDA GPU(s) here", field="rollout.tensor_parallel_size"
        )


def choose_engine(config: Config, cuda: bool) -> EngineChoice:
    """The engine ``rollout.engine`` asks for; an explicit ``vllm`` that cannot run here, or vLLM (auto included)
    asked to shard over more GPUs than there are, is an input error."""
    asked = config.rollout.engine
    if asked == "transformers":
        return EngineChoice("transformers", "rollout.engine=transformers")
    if asked == "vllm-server":
        return EngineChoice("vllm-server", f"rollout.engine=vllm-server ({config.rollout.server_url})")
    check_tensor_parallel(config.rollout.tensor_parallel_size)
    if asked == "auto" and not cuda:
        # Checked without importing vLLM: on CPUs its CPU build bought no speed (docs/BENCHMARKS.md) and
        # costs ~35 s of start-up and a core; rollout.engine=vllm still takes it.
        return EngineChoice("transformers", "auto: no CUDA GPU, and on CPUs transformers is as fast as vLLM")
    problem = vllm_problem(config.model.quantize, cuda)
    if asked == "vllm":
        if problem:
            raise InputError(problem, field="rollout.engine")
        return EngineChoice("vllm", "rollout.engine=vllm")
    if problem:
        return EngineChoice("transformers", f"auto: {problem}")
    return EngineChoice("vllm", "auto: a CUDA GPU and a working vLLM")


def open_engine(choice: EngineChoice, base: BaseModel, policy: Policy, config: Config, console: Console) -> Engine:
    """The engine, ready to generate (vLLM itself starts on its first call)."""
    if choice.name == "vllm":
        from rollouts.vllm_engine import VllmEngine

        return VllmEngine(base, policy.tokenizer, config, console)
    if choice.name == "vllm-server":
        from rollouts.vllm_server import VllmServerEngine

        return VllmServerEngine(base, policy.tokenizer, config, console)
    from rollouts.transformers_engine import TransformersEngine

    return TransformersEngine(policy, config.rollout.batch_size, console)

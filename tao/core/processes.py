"""The processes of a run started with ``accelerate launch`` (several GPUs, several machines).

Process 0 runs the loop: it ingests, explores, scores, evaluates and registers, and alone writes the run
directory. The other processes join the one stage that is spread across processes, the update: trl's
GRPOTrainer trains data-parallel (DDP, DeepSpeed or FSDP, as the accelerate config says), each process on its
share of the round's prompt groups, and process 0 saves the adapter once. Between updates the others wait for
an order from process 0 on a separate gloo group (so that a long exploration does not trip the training
backend's timeout). The run directory must be on a filesystem every machine sees: the others read the round's
plan, candidates and parent adapter from it.

A plain ``tao run`` (no launcher) is one process, and none of this costs anything.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from tao.core.errors import InputError

WAIT = timedelta(days=7)  # how long the other processes wait for process 0's next order
_control: Any = None


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def count() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def start() -> None:
    """Join the launcher's process group (gloo on CPUs, NCCL on GPUs) and open the control group."""
    global _control
    if count() == 1 or _control is not None:
        return
    import torch.distributed as dist
    from accelerate import PartialState

    PartialState()  # reads the launcher's environment, sets this process's GPU, starts the process group
    _control = dist.new_group(backend="gloo", timeout=WAIT)


def send(order: dict | None) -> None:
    """Process 0: hand the others their next order (None: the run is over)."""
    if count() > 1:
        _broadcast(order)


def receive() -> dict | None:
    """The other processes: wait for process 0's next order."""
    return _broadcast(None)


def gather(value: Any) -> list[Any]:
    """Every process's ``value``, in rank order (on every process)."""
    if count() == 1:
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * count()
    dist.all_gather_object(out, value, group=_control)
    return out


def _broadcast(value: Any) -> Any:
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0, group=_control)
    return box[0]


def check_engine(name: str) -> None:
    """With the base sharded across processes (FSDP, ZeRO-3), process 0 cannot generate with it alone."""
    if sharded() and name == "transformers":
        raise InputError(
            f"under {sharded()} the base model is sharded across the processes, so process 0 cannot generate with it: "
            "use rollout.engine=vllm or vllm-server",
            field="rollout.engine",
        )


def sharded() -> str | None:
    """The accelerate config's parameter sharding ('fsdp', 'zero3'), or None (DDP, ZeRO-2, one process)."""
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "fsdp"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        return "zero3" if os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3" else None
    return None


def check_launcher(quantize: str) -> None:
    """Refuse launcher settings tao cannot honour: saving a ZeRO-3 adapter needs its weights gathered in 16 bits,
    and bitsandbytes' 4-bit weights cannot be offloaded by FSDP or DeepSpeed."""
    if sharded() == "zero3" and os.environ.get("ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL", "").lower() != "true":
        raise InputError(
            "under DeepSpeed ZeRO-3 the adapter can be saved only with zero3_save_16bit_model: true in the accelerate "
            "config (configs/accelerate/zero3.yaml)",
            field="zero3_save_16bit_model",
        )
    if quantize != "nf4":
        return
    if sharded() == "fsdp" and os.environ.get("FSDP_OFFLOAD_PARAMS", "").lower() == "true":
        raise InputError(
            "FSDP cannot offload bitsandbytes 4-bit weights to the CPU; set fsdp_offload_params: false in the "
            "accelerate config (configs/accelerate/fsdp.yaml), or model.quantize=none",
            field="model.quantize",
        )
    if os.environ.get("ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE", "none") not in ("none", ""):
        raise InputError(
            "DeepSpeed cannot offload bitsandbytes 4-bit weights; set offload_param_device: none in the "
            "accelerate config (configs/accelerate/zero3.yaml), or model.quantize=none",
            field="model.quantize",
        )

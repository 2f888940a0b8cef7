"""The optimizer state a run carries from round to round, saved beside each round's adapter.

Each round's update is one stretch of a single training run: a fresh Adam would take its first step at the full
learning rate in the sign of one noisy batch gradient (its moments one step old), every round. Adam's moments and
step counts are saved by parameter name as safetensors and loaded into the next round's empty optimizer.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

OPTIMIZER_FILE = "optimizer.safetensors"  # saved beside each adapter: the optimizer state the next round continues


def save_optimizer(model: Any, optimizer: Any, path: Path) -> None:
    """Adam's state of each trainable parameter (its moments and step count), by parameter name, as safetensors.
    Nothing is written when the optimizer does not hold the model's own parameters (FSDP, DeepSpeed)."""
    from safetensors.torch import save_file

    state = _own_state(model, optimizer)
    if state is not None:
        tensors = {f"{name}|{key}": value.detach().cpu().contiguous() for name, key, value in state}
        save_file(tensors, path)


def _own_state(model: Any, optimizer: Any) -> list[tuple[str, str, Any]] | None:
    """(parameter name, state key, tensor) for every trainable parameter, or None when the optimizer's
    parameters are not the model's (flattened or sharded by FSDP or DeepSpeed)."""
    import torch

    inner = getattr(optimizer, "optimizer", optimizer)
    owned = {id(p) for group in inner.param_groups for p in group["params"]}
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable or any(id(p) not in owned for _, p in trainable):
        return None
    return [
        (name, key, value)
        for name, param in trainable
        for key, value in inner.state.get(param, {}).items()
        if torch.is_tensor(value)
    ]


def carry_optimizer(model: Any, path: Path | None) -> Any:
    """A trainer callback that starts the optimizer from the state saved with the parent round's adapter.

    The state is carried only into an empty optimizer (a killed update resumed from its own checkpoint keeps that
    one), and only when it holds every trainable parameter with its shape and dtype; otherwise it starts fresh.
    """
    from transformers import TrainerCallback

    class CarryOptimizer(TrainerCallback):
        outcome = "fresh"

        def on_train_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
            inner = getattr(optimizer, "optimizer", optimizer)
            if inner is not None and inner.state:
                self.outcome = "resumed"  # from the killed update's own checkpoint
                return
            if path is None or not path.is_file():
                return
            from safetensors.torch import load_file

            per_param = _by_parameter(load_file(path))
            params = {n: p for n, p in model.named_parameters() if p.requires_grad}
            if not _fits(per_param, params) or _own_state(model, optimizer) is None:
                return
            for name, param in params.items():
                inner.state[param] = {k: v.to(param.device) for k, v in per_param[name].items()}
            self.outcome = "carried"

    return CarryOptimizer()


def _by_parameter(saved: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"<param>|<key>": tensor}`` as saved -> ``{param: {key: tensor}}``."""
    per_param: defaultdict[str, dict[str, Any]] = defaultdict(dict)
    for key, value in saved.items():
        name, _, field = key.rpartition("|")
        per_param[name][field] = value
    return dict(per_param)


def _fits(per_param: dict[str, dict[str, Any]], params: dict[str, Any]) -> bool:
    """The saved state covers exactly these parameters, with moments of their shape and dtype."""
    if set(per_param) != set(params):
        return False
    moments = [(per_param[n].get("exp_avg"), p) for n, p in params.items()]
    return all(m is not None and (m.shape, m.dtype) == (p.shape, p.dtype) for m, p in moments)

"""A user's Python reward function, named explicitly as ``module:function`` or ``path/to/file.py:function``.

It has trl's reward-function signature, so the same function works in a plain trl script::

    def my_reward(prompts, completions, completion_ids, **kwargs) -> list[float | None]

``prompts`` are chat message lists, ``completions`` are ``[{"role": "assistant", "content": ...}]`` lists,
``completion_ids`` token id lists, and each metadata field of the prompts file arrives as a keyword
argument (a list aligned with the candidates; None where a prompt lacks the field). Like trl, it also gets
``trainer_state`` (None here: scoring happens outside the trainer), ``log_extra`` and ``log_metric``
(accepted, and ignored). It may be async and may return any sequence (list, array, tensor). Nothing is
imported unless a spec names it; a module name is looked up from the current directory first.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tao.core.errors import InputError
from tao.core.types import Candidate, Prompt


def load_function(target: str, spec: str) -> Callable[..., Any]:
    module_name, _, func_name = target.rpartition(":")
    if not module_name or not func_name:
        raise InputError("expected module:function or file.py:function", field=spec)
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise InputError("reward function file not found", file=path, field=spec)
            module_spec = importlib.util.spec_from_file_location(f"tao_user_reward_{path.stem}", path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = _import_from_cwd(module_name)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot import {module_name}: {type(exc).__name__}: {exc}", field=spec) from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise InputError(f"{module_name} has no function {func_name!r}", field=spec)
    return func


def _import_from_cwd(name: str) -> Any:
    """``import name`` with the working directory first on the path, as `python -m` would find your own module,
    then the path as it was: a later import of trl, peft or vLLM must not pick up a same-named file there."""
    saved = list(sys.path)
    sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    finally:
        sys.path[:] = saved


@dataclass(frozen=True)
class FunctionScorer:
    name: str
    func: Callable[..., Any]

    def score(self, prompts: Sequence[Prompt], candidates: Sequence[Candidate]) -> list[float | None]:
        keys = sorted({k for p in prompts for k in p.metadata})
        columns = {k: [p.metadata.get(k) for p in prompts] for k in keys}
        try:
            result = self.func(
                prompts=[p.chat() for p in prompts],
                completions=[[{"role": "assistant", "content": c.text}] for c in candidates],
                completion_ids=[list(c.token_ids) for c in candidates],
                trainer_state=None,
                log_extra=_ignore,
                log_metric=_ignore,
                **columns,
            )
            if inspect.isawaitable(result):
                result = asyncio.run(result)
            values = list(result)
        except Exception as exc:  # the user's code failed: one line naming it, not a traceback
            raise InputError(f"raised {type(exc).__name__}: {exc}", field=self.name) from None
        if len(values) != len(candidates):
            raise InputError(
                f"must return {len(candidates)} scores (floats or None), got {len(values)}", field=self.name
            )
        return [_number(v, self.name) for v in values]


def _ignore(*args: Any, **kwargs: Any) -> None:
    return None


def _number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"returned {value!r}, not a number or None", field=name) from None
    return number if math.isfinite(number) else None

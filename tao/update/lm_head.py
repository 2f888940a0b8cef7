"""trl's fused LM head, scoring only the completion tokens on every device.

trl 1.16 computes the update's log-probabilities with a chunked LM head (``trl.kernels.ChunkedLogProbFunction``).
On devices with Triton it projects only the positions that carry a label (the completion tokens); elsewhere it
projects every position (prompt, completion and padding alike) so that tile shapes stay fixed for compilers that
would recompile on each new shape. tao does not compile the update, so on a CPU that choice only costs time: the
prompt and the padding are much of a group's positions, and the head projects each onto the whole vocabulary.
``completion_tokens_only`` makes trl take its own compact path there too. The log-probabilities are the same
(the skipped positions are masked out either way); what it saves: docs/BENCHMARKS.md, "The update's LM head".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def completion_tokens_only() -> Iterator[None]:
    """While open, trl's fused LM head scores only labelled positions on CPUs as well (trl's ``compact`` path)."""
    import trl.trainer.utils as trl_utils

    choice = getattr(trl_utils, "_use_triton", None)  # decides trl's compact path, and nothing else in that module
    if choice is None:  # another trl than the pinned one: its own choice (tests/test_training.py notices)
        yield
        return

    def compact(device: Any) -> bool:
        return device.type == "cpu" or choice(device)

    trl_utils._use_triton = compact
    try:
        yield
    finally:
        trl_utils._use_triton = choice

"""Reward functions the tests name as ``tests.rewards:NAME`` (trl's reward-function signature)."""

from __future__ import annotations

CALLS: list[dict] = []


def letter_a(prompts, completions, completion_ids, **kwargs):
    """How many letters 'a' the answer has: varies between random samples by whole units, so groups carry signal."""
    return [float(c[0]["content"].count("a")) for c in completions]


def record(prompts, completions, completion_ids, **kwargs):
    """Remembers what it was called with; scores by completion length."""
    CALLS.append({"prompts": prompts, "completions": completions, "completion_ids": completion_ids, **kwargs})
    return [float(len(ids)) for ids in completion_ids]


def constant(prompts, completions, completion_ids, **kwargs):
    return [1.0] * len(completions)


def wrong_length(prompts, completions, completion_ids, **kwargs):
    return [1.0]


async def async_len(prompts, completions, completion_ids, **kwargs):
    return [float(len(c[0]["content"])) for c in completions]


def raising(prompts, completions, completion_ids, **kwargs):
    raise ValueError("checker is broken")


def as_array(prompts, completions, completion_ids, trainer_state, log_metric, **kwargs):
    """Uses trl-only arguments and returns an array, as trl allows."""
    import numpy as np

    assert trainer_state is None
    log_metric("seen", len(completions))
    return np.arange(len(completions), dtype=float)


def mostly_nan(prompts, completions, completion_ids, **kwargs):
    """A broken scorer: NaN for all but the first candidate of a call."""
    return [1.0] + [float("nan")] * (len(completions) - 1)


def terminated(prompts, completions, completion_ids, **kwargs):
    """Gets SIGTERM while it scores, as a scorer does when the machine stops the job."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGTERM)
    return [0.0] * len(completions)

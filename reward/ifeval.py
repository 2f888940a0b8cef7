"""IFEval's own instruction checker (the ``if-verifiable`` package): the yardstick, and the checks of the reward.

``follows`` decides whether an answer follows one IFEval instruction (an instruction id and its arguments) exactly
as IFEval's strict evaluation does: the official checker classes, the official handling of empty answers and
thinking blocks. Two users:

- the yardstick scorers ``ifeval`` (prompt-level strict: 1 if every labelled instruction is followed) and
  ``ifeval:instructions`` (instruction-level strict: the share followed). They read the item's own labels, IFEval's
  ``instruction_id_list`` and ``kwargs`` fields, and have no opinion on an item without them. Nothing of tao's
  decides what is asked: the labels do.
- ``rule:instructions`` (reward/instructions.py), which finds the instructions in the prompt text itself (no
  labels) and checks each with ``follows``: what the reward and the yardstick can still disagree on is what was
  asked, never how an answer is checked.

Sentence counts use NLTK's Punkt model (``punkt_tab``). Where NLTK's data is not installed (it is downloaded, not
carried by a package), a Punkt without trained statistics and with common English abbreviations stands in
(reward/nltk_data); ``PUNKT`` says which one counts. ``python -m nltk.downloader punkt_tab`` installs the official
one.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import langdetect
import nltk
from if_verifiable.common import evaluate_instructions
from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

from tao.core.errors import InputError
from tao.core.types import Candidate, Prompt

langdetect.DetectorFactory.seed = 0  # langdetect samples; a fixed seed makes a verdict the same on every call

KNOWN = frozenset(INSTRUCTION_DICT)


def _punkt() -> str:
    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return "NLTK punkt_tab"
    except LookupError:
        nltk.data.path.append(str(Path(__file__).parent / "nltk_data"))
        return "untrained Punkt with common abbreviations (NLTK's punkt_tab is not installed)"


PUNKT = _punkt()


@contextmanager
def _fixed_random() -> Iterator[None]:
    """Python's random module seeded for the duration, its state restored after: IFEval's checkers draw a random
    value for an argument they cannot use (a letter count's "letter" of "!" becomes a random letter), which made the
    same answer's verdict change from one call to the next."""
    state = random.getstate()
    random.seed(0)
    try:
        yield
    finally:
        random.setstate(state)


def follows(instruction_id: str, kwargs: Mapping[str, Any], answer: str, prompt: str) -> bool:
    """Whether ``answer`` follows one instruction, by IFEval's strict evaluation."""
    with _fixed_random():
        results, _ = evaluate_instructions(answer, [instruction_id], [dict(kwargs)], prompt, INSTRUCTION_DICT)
    return bool(results) and results[0].strict_pass


def labels(prompt: Prompt) -> list[tuple[str, dict]] | None:
    """The item's IFEval labels as (instruction id, arguments) pairs; None when it carries none."""
    ids, kwargs = prompt.metadata.get("instruction_id_list"), prompt.metadata.get("kwargs")
    if ids is None:
        return None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise InputError(f"item {prompt.id!r}: expected a non-empty list of strings", field="instruction_id_list")
    unknown = sorted(set(ids) - KNOWN)
    if unknown:
        raise InputError(f"item {prompt.id!r}: unknown IFEval instruction {unknown[0]!r}", field="instruction_id_list")
    kwargs = [{}] * len(ids) if kwargs is None else kwargs
    if not isinstance(kwargs, list) or len(kwargs) != len(ids) or not all(isinstance(k, dict) for k in kwargs):
        raise InputError(f"item {prompt.id!r}: expected one object per instruction", field="kwargs")
    return list(zip(ids, kwargs, strict=True))


@dataclass(frozen=True)
class IFEvalScorer:
    """``ifeval`` (1 if every labelled instruction is followed, else 0) or ``ifeval:instructions`` (the share
    followed), from the item's own IFEval labels; None for an item without them."""

    name: str
    prompt_level: bool

    def score(self, prompts: Sequence[Prompt], candidates: Sequence[Candidate]) -> list[float | None]:
        out: list[float | None] = []
        for prompt, candidate in zip(prompts, candidates, strict=True):
            asked = labels(prompt)
            if asked is None:
                out.append(None)
                continue
            ids, kwargs = [i for i, _ in asked], [k for _, k in asked]
            _, scores = evaluate_instructions(candidate.text, ids, kwargs, prompt.text, INSTRUCTION_DICT)
            out.append(scores.binary_strict if self.prompt_level else scores.partial_strict)
        return out


def build(spec: str) -> IFEvalScorer:
    """``ifeval`` or ``ifeval:instructions``."""
    if spec == "ifeval":
        return IFEvalScorer(spec, True)
    if spec == "ifeval:instructions":
        return IFEvalScorer(spec, False)
    raise InputError("expected ifeval (prompt level) or ifeval:instructions (instruction level)", field=spec)

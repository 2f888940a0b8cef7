"""Verifiable instructions found in a prompt's own text, checked by IFEval's checker.

Application prompts often carry constraints a program can check: a word limit, "no commas", "answer in
JSON", "end with the phrase ...", a number of bullet points. ``detect`` reads such instructions from the system
turns and the user's last turn (English wording) and states each in IFEval's terms: an instruction id and its
arguments, e.g. ``length_constraints:number_words`` with ``{"relation": "less than", "num_words": 51}`` for "at
most 50 words". Each is then checked by IFEval's own checker (reward/ifeval.py), so the reward and the IFEval
yardstick judge an answer alike wherever they agree on what was asked. Nothing here reads labels: only the text.

The wordings live by family: form.py (case, punctuation, title, quotation, start and end, language, ...),
counts.py (words, sentences, paragraphs, sections, bullets, ...), keywords.py (words to use or avoid, frequencies);
wording.py holds what they share. Three kinds IFEval has no id for are checked here: ``tao:start_with`` (start
with a quoted word or phrase), ``tao:options`` (answer with one of the quoted options offered) and
``tao:paragraphs`` (a number of paragraphs separated by blank lines, where IFEval counts only those separated by
``***``). A prompt with no instruction gets no opinion (None), not a zero. How often this agrees with IFEval's
labelled checker on real answers: docs/BENCHMARKS.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reward import ifeval
from reward.instructions import counts, form, keywords
from reward.instructions.wording import in_question
from tao.core.types import Prompt

RULES = form.RULES + counts.RULES + keywords.RULES  # the wordings recognised, by family


@dataclass(frozen=True)
class Instruction:
    id: str  # IFEval's instruction id (e.g. "punctuation:no_comma"), or tao:start_with / tao:options
    kwargs: tuple[tuple[str, Any], ...]  # its arguments, named as IFEval names them (lists as tuples)
    prompt: str  # the text it was found in (IFEval's repeat check reads it)

    @property
    def arguments(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.kwargs}

    def check(self, answer: str) -> bool:
        own = _OWN_CHECKS.get(self.id)
        if own:
            return own(self.arguments, answer)
        return ifeval.follows(self.id, self.arguments, answer, self.prompt)


def _starts_with(args: dict, answer: str) -> bool:
    return answer.strip().lstrip("\"“'‘*# ").lower().startswith(args["phrase"].strip().lower())


def _one_of(args: dict, answer: str) -> bool:
    return any(option in answer for option in args["options"])


def _paragraphs(args: dict, answer: str) -> bool:
    return len([p for p in re.split(r"\n\s*\n", answer) if p.strip()]) == args["num_paragraphs"]


_OWN_CHECKS: dict[str, Callable[[dict, str], bool]] = {
    "tao:start_with": _starts_with,
    "tao:options": _one_of,
    "tao:paragraphs": _paragraphs,
}


def _frozen(kwargs: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))


def detect(prompt: Prompt) -> list[Instruction]:
    """Instructions in the system turns and the user's last turn (not in wh-questions about a topic)."""
    texts = [m.content for m in prompt.messages if m.role in ("system", "developer")] + [prompt.text]
    found: list[Instruction] = []
    seen: set[tuple[str, tuple]] = set()
    for text in texts:
        for pattern, build in RULES:
            for match in pattern.finditer(text):
                if in_question(match):
                    continue
                for ident, kwargs in build(match):
                    key = (ident, _frozen(kwargs))
                    if key not in seen:
                        seen.add(key)
                        found.append(Instruction(ident, key[1], text))
    return found


def follow_rate(prompt: Prompt, answer: str) -> float | None:
    """Share of the prompt's detected instructions the answer follows; None when there are none."""
    instructions = detect(prompt)
    if not instructions:
        return None
    return sum(i.check(answer) for i in instructions) / len(instructions)


def json_ok(text: str) -> bool:
    """The answer, optionally inside a ``` fence, parses as JSON (IFEval's own JSON check)."""
    return ifeval.follows("detectable_format:json_format", {}, text, "")

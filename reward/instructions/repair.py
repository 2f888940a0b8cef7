"""Mechanical repairs: an answer edited until it follows the instructions a program can enforce by itself.

Some instructions a small model almost never follows while sampling (all lowercase, all capitals, the whole answer
in double quotes, no commas, the request repeated first, a closing phrase), so exploration finds no good answer
to learn from. For those, :func:`repair` edits the model's own answer the way the checker would have it: the
``repair`` exploration strategy (rollouts/strategies.py) offers the edited answer as a candidate, the reward scores
it like any other, and the update learns from it where it wins its group. Only the prompt's text is read, as for
the reward; an instruction the answer already follows is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from reward.instructions import Instruction, detect
from tao.core.types import Prompt


def _repeat(args: dict[str, Any], text: str) -> str:
    return f"{args['prompt_to_repeat'].strip()}\n\n{text.lstrip()}"


def _end(args: dict[str, Any], text: str) -> str:
    return f"{text.rstrip()} {args['end_phrase'].strip()}"


def _no_comma(args: dict[str, Any], text: str) -> str:
    return re.sub(r"\s*,", "", text)


def _quoted(args: dict[str, Any], text: str) -> str:
    return f'"{text.strip()}"'


# In the order they are applied: text added first, the case of all of it next, the quotation marks last.
FIXES: dict[str, Callable[[dict[str, Any], str], str]] = {
    "combination:repeat_prompt": _repeat,
    "startend:end_checker": _end,
    "change_case:english_lowercase": lambda args, text: text.lower(),
    "change_case:english_capital": lambda args, text: text.upper(),
    "punctuation:no_comma": _no_comma,
    "startend:quotation": _quoted,
}


def repair(prompt: Prompt, answer: str) -> str:
    """``answer`` with the fixes for the prompt's instructions it does not follow; unchanged when none applies."""
    found: dict[str, Instruction] = {i.id: i for i in detect(prompt) if i.id in FIXES}
    text = answer
    for ident, fix in FIXES.items():
        instruction = found.get(ident)
        if instruction and not instruction.check(text):
            text = fix(instruction.arguments, text)
    return text

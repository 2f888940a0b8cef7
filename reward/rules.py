"""Built-in rules: cheap checks of one answer, each returning a score in [0, 1] or None (no opinion).

rule:instructions     share of the prompt's verifiable instructions followed (None if it has none)
rule:finished         1 if the model ended its answer within the token budget, else 0
rule:repetition       share of distinct word 4-grams (1 = no repeated phrase, towards 0 = looping)
rule:length:N         1 up to N words, then N / words
rule:json             1 if the answer (optionally in a ``` fence) is valid JSON, else 0
rule:regex:PATTERN    1 if PATTERN (Python syntax) matches somewhere in the answer, else 0
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reward import instructions
from rollouts.generator import Candidate
from tao.errors import InputError
from tao.prompts import Prompt

Check = Callable[[Prompt, Candidate], "float | None"]


def _repetition(prompt: Prompt, candidate: Candidate) -> float:
    words = candidate.text.lower().split()
    grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
    return len(set(grams)) / len(grams) if grams else 1.0


def _length(limit: int) -> Check:
    def check(prompt: Prompt, candidate: Candidate) -> float:
        n = len(candidate.text.split())
        return 1.0 if n <= limit else limit / n

    return check


def _regex(pattern: re.Pattern) -> Check:
    return lambda prompt, candidate: float(pattern.search(candidate.text) is not None)


def _json(prompt: Prompt, candidate: Candidate) -> float:
    return float(instructions.json_ok(candidate.text))


def rule_check(name: str, arg: str | None, spec: str) -> Check:
    """The check named by ``rule:NAME[:ARG]``; unknown names and bad arguments are InputErrors."""

    def no_arg(check: Check) -> Check:
        if arg is not None:
            raise InputError(f"rule:{name} takes no argument", field=spec)
        return check

    if name == "instructions":
        return no_arg(lambda p, c: instructions.follow_rate(p, c.text))
    if name == "finished":
        return no_arg(lambda p, c: float(c.finished))
    if name == "repetition":
        return no_arg(_repetition)
    if name == "json":
        return no_arg(_json)
    if name == "length":
        if arg is None or not arg.isdigit() or int(arg) < 1:
            raise InputError("rule:length needs a word limit, e.g. rule:length:200", field=spec)
        return _length(int(arg))
    if name == "regex":
        try:
            return _regex(re.compile(arg or ""))
        except re.error as exc:
            raise InputError(f"invalid regular expression: {exc}", field=spec) from None
    known = "instructions, finished, repetition, length:N, json, regex:PATTERN"
    raise InputError(f"unknown rule {name!r} (known: {known})", field=spec)


@dataclass(frozen=True)
class RuleScorer:
    name: str
    check: Check

    def score(self, prompts: Sequence[Prompt], candidates: Sequence[Candidate]) -> list[float | None]:
        return [self.check(p, c) for p, c in zip(prompts, candidates, strict=True)]

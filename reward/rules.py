"""Built-in rules: cheap checks of one answer, each returning a score in [0, 1] or None (no opinion).

rule:instructions     share of the prompt's verifiable instructions followed (None if it has none)
rule:all_instructions 1 if every verifiable instruction is followed (prompt-level strict), else 0 (None if none)
rule:exact            1 if the answer equals the item's ``reference`` field (case and spacing ignored), else 0
rule:final_number     1 if the answer's last number equals the ``reference``'s last number (GSM8K style), else 0
rule:majority_number  1 if the answer's last number is the most common one among its group (self-consistency,
                      no labels needed), else 0; None when the group agrees on no number
rule:finished         1 if the model ended its answer within the token budget, else 0
rule:repetition       share of distinct word 4-grams (1 = no repeated phrase, towards 0 = looping)
rule:length:N         1 up to N words, then N / words
rule:min_words:N      words / N up to 1: an answer with substance (a floor against content-free answers)
rule:json             1 if the answer (optionally in a ``` fence) is valid JSON, else 0
rule:regex:PATTERN    1 if PATTERN (Python syntax) matches somewhere in the answer, else 0
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reward import instructions
from tao.core.errors import InputError
from tao.core.types import Candidate, Prompt

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


def _min_words(floor: int) -> Check:
    return lambda prompt, candidate: min(1.0, len(candidate.text.split()) / floor)


def _regex(pattern: re.Pattern) -> Check:
    return lambda prompt, candidate: float(pattern.search(candidate.text) is not None)


def _json(prompt: Prompt, candidate: Candidate) -> float:
    return float(instructions.json_ok(candidate.text))


def _all_instructions(prompt: Prompt, candidate: Candidate) -> float | None:
    rate = instructions.follow_rate(prompt, candidate.text)
    return None if rate is None else float(rate == 1.0)


def _normal(text: str) -> str:
    return " ".join(text.lower().split()).strip(" .")


def _reference(prompt: Prompt) -> str | None:
    ref = prompt.metadata.get("reference")
    return None if ref is None else str(ref)


def _exact(prompt: Prompt, candidate: Candidate) -> float | None:
    ref = _reference(prompt)
    return None if ref is None else float(_normal(candidate.text) == _normal(ref))


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def last_number(text: str) -> float | None:
    """The last number in ``text`` (thousands separators dropped), or None."""
    found = _NUMBER.findall(text)
    return float(found[-1].replace(",", "")) if found else None


def _final_number(prompt: Prompt, candidate: Candidate) -> float | None:
    ref = _reference(prompt)
    if ref is None or last_number(ref) is None:
        return None
    return float(last_number(candidate.text) == last_number(ref))


def rule_check(name: str, arg: str | None, spec: str) -> Check:
    """The check named by ``rule:NAME[:ARG]``; unknown names and bad arguments are InputErrors."""

    def no_arg(check: Check) -> Check:
        if arg is not None:
            raise InputError(f"rule:{name} takes no argument", field=spec)
        return check

    if name == "instructions":
        return no_arg(lambda p, c: instructions.follow_rate(p, c.text))
    if name == "all_instructions":
        return no_arg(_all_instructions)
    if name == "exact":
        return no_arg(_exact)
    if name == "final_number":
        return no_arg(_final_number)
    if name == "finished":
        return no_arg(lambda p, c: float(c.finished))
    if name == "repetition":
        return no_arg(_repetition)
    if name == "json":
        return no_arg(_json)
    if name == "length":
        if arg is None or not arg.isdecimal() or int(arg) < 1:
            raise InputError("rule:length needs a word limit, e.g. rule:length:200", field=spec)
        return _length(int(arg))
    if name == "min_words":
        if arg is None or not arg.isdecimal() or int(arg) < 1:
            raise InputError("rule:min_words needs a word count, e.g. rule:min_words:40", field=spec)
        return _min_words(int(arg))
    if name == "regex":
        try:
            return _regex(re.compile(arg or ""))
        except re.error as exc:
            raise InputError(f"invalid regular expression: {exc}", field=spec) from None
    known = (
        "instructions, all_instructions, exact, final_number, majority_number, finished, repetition, length:N, "
        "min_words:N, "
        "json, regex:PATTERN"
    )
    raise InputError(f"unknown rule {name!r} (known: {known})", field=spec)


@dataclass(frozen=True)
class RuleScorer:
    name: str
    check: Check

    def score(self, prompts: Sequence[Prompt], candidates: Sequence[Candidate]) -> list[float | None]:
        return [self.check(p, c) for p, c in zip(prompts, candidates, strict=True)]


@dataclass(frozen=True)
class MajorityScorer:
    """``rule:majority_number``: agreement with the group's most common final number (scores whole groups)."""

    name: str = "rule:majority_number"

    def score(self, prompts: Sequence[Prompt], candidates: Sequence[Candidate]) -> list[float | None]:
        numbers = [last_number(c.text) for c in candidates]
        votes: dict[str, dict[float, int]] = {}
        for c, n in zip(candidates, numbers, strict=True):
            if n is not None:
                votes.setdefault(c.prompt_id, {})[n] = votes.setdefault(c.prompt_id, {}).get(n, 0) + 1
        out: list[float | None] = []
        for c, n in zip(candidates, numbers, strict=True):
            counts = votes.get(c.prompt_id, {})
            top = max(counts.values(), default=0)
            out.append(None if top < 2 else float(n is not None and counts.get(n, 0) == top))
        return out

"""What the instruction rules share: numbers in words, bounds in IFEval's two relations, quoted and listed words.

IFEval's counts have two relations, "less than" and "at least"; every other wording is stated in them ("at most 50"
is "less than 51", "exactly 3" is both "at least 3" and "less than 4", "between 100 and 200" is "at least 100" and
"less than 201").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Found = list[tuple[str, dict[str, Any]]]  # (IFEval instruction id, its arguments) pairs
Build = Callable[[re.Match], Found]

_WORDS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
]


_TENS = {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}


_NUMBERS = {**{w: i for i, w in enumerate(_WORDS)}, **_TENS, "a single": 1, "single": 1, "once": 1, "twice": 2}
_NUMBERS["thrice"] = 3
NUM = r"(\d+|" + "|".join(sorted(_NUMBERS, key=len, reverse=True)) + r")"


REL = (
    r"(at least|at most|no more than|no less than|not more than|not less than|fewer than|less than|more than|"
    r"under|over|below|above|exceeding|maximum of|minimum of|a maximum of|a minimum of|up to|exactly|only|just|"
    r"a total of|in total|less than a total of)"
)


POST = r"(or more|or fewer|or less|or above|or below|\+|and above|or greater|at most|at least|max|maximum|minimum)"


QUOTE = r"[\"“”'‘’`]"


QUOTED = QUOTE + r"([^\"“”'‘’`\n]{1,120}?)" + QUOTE
SPAN = r"[^.!?\n]{0,80}?"  # within one sentence
RANGE = r"(?:between )?(?P<low>\d+|" + NUM[1:-1] + r") (?:to|-|and|or) (?P<high>\d+|" + NUM[1:-1] + r")"
BOUNDED = r"(?:(?P<rel>" + REL[1:-1] + r") )?(?P<n>" + NUM[1:-1] + r")(?:\s?(?P<post>" + POST[1:-1] + r"))?"
NO = r"(?:do not|don't|dont|never|avoid|without|should not|shouldn't|must not|mustn't|cannot|can't|not|refrain from)"
WHOLE = r"(?:your |the |my )?(?:entire |whole |full |complete )?(?:response|answer|output|reply|email|text|essay|poem)"
CAPS = r"(?:capital letters|caps|capitals|upper[- ]?case(?: letters)?|capitalized letters)"


def number(text: str) -> int:
    text = text.lower().strip()
    return int(text) if text.isdecimal() else _NUMBERS[text]


def bounds(relation: str | None, n: int, after: str | None = None) -> list[tuple[str, int]]:
    """A bounded count as IFEval's (relation, threshold) pairs."""
    rel = (relation or after or "exactly").lower().strip().removeprefix("a ")
    if rel in (
        "at least",
        "no less than",
        "not less than",
        "minimum of",
        "or more",
        "+",
        "and above",
        "or above",
        "or greater",
        "minimum",
    ):
        return [("at least", n)]
    if rel in ("fewer than", "less than", "under", "below", "less than a total of"):
        return [("less than", n)]
    if rel in (
        "at most",
        "no more than",
        "not more than",
        "maximum of",
        "up to",
        "or fewer",
        "or less",
        "or below",
        "max",
        "maximum",
    ):
        return [("less than", n + 1)]
    if rel in ("more than", "over", "above", "exceeding"):
        return [("at least", n + 1)]
    return [("at least", n), ("less than", n + 1)]  # exactly, only, just, a total of, a bare number


def range_bounds(low: str, high: str) -> list[tuple[str, int]]:
    return [("at least", number(low)), ("less than", number(high) + 1)]


def count_bounds(m: re.Match) -> list[tuple[str, int]]:
    """Bounds from a match with groups rel, n, post (``n`` alone means exactly) or low, high (a range)."""
    groups = m.groupdict()
    if groups.get("low"):
        return range_bounds(groups["low"], groups["high"])
    return bounds(groups.get("rel"), number(groups["n"]), groups.get("post"))


def counted(ident: str, relation: str, threshold: str) -> Build:
    return lambda m: [(ident, {relation: r, threshold: n}) for r, n in count_bounds(m)]


def listed(text: str) -> list[str]:
    """Words named in a list: quoted ones, else a bare list split at commas, 'and', 'or'."""
    quoted = [q.strip() for q in re.findall(QUOTED, text) if q.strip()]
    if quoted:
        return quoted
    text = re.sub(r"[\[\]]", "", text)
    parts = re.split(r",\s*(?:and |or )?|\s+and\s+|\s+or\s+", text.strip())
    return [p.strip(" .:;") for p in parts if p.strip(" .:;") and len(p.split()) <= 3]


def in_question(match: re.Match) -> bool:
    """The match is the topic of a question ("How do I convert a string to lowercase?", "explain how to avoid
    commas in CSV"), not an instruction about the answer."""
    start = max(match.string.rfind(c, 0, match.start()) for c in ".!?\n") + 1
    head = match.string[start:].lstrip(" \"'*-#0123456789)")
    if re.match(r"(?:how|what|why|when|where|which|who|whose)\b", head, re.I):
        return True
    return re.search(r"\bhow (?:to|do i|can i|should i)\s*$", match.string[start : match.start()], re.I) is not None


def said_before(m: re.Match, pattern: str, span: int = 30) -> bool:
    """``pattern`` occurs in the ``span`` characters before the match (within its sentence)."""
    head = m.string[max(0, m.start() - span) : m.start()]
    head = re.split(r"[.!?\n]", head)[-1]
    return re.search(pattern, head, re.I) is not None


def fixed(ident: str, **kwargs: Any) -> Build:
    return lambda m: [(ident, dict(kwargs))]


class Renamed:
    """A match whose named groups are seen under other names (several alternatives feed one builder)."""

    def __init__(self, match: re.Match, **names: str | None):
        self.match, self.names, self.string = match, names, match.string

    def __getitem__(self, key: str) -> Any:
        return self.names[key] if key in self.names else self.match[key]

    def groupdict(self) -> dict[str, Any]:
        return {**self.match.groupdict(), **self.names}

    def group(self, index: int) -> str:
        return self.match.group(index)


def compile_rules(rules: list[tuple[str, Build]]) -> list[tuple[re.Pattern, Build]]:
    """Each rule's pattern compiled (case-insensitive); a bad pattern names its rule."""
    out = []
    for i, (pattern, build) in enumerate(rules):
        try:
            out.append((re.compile(pattern, re.I), build))
        except re.error as exc:
            raise RuntimeError(f"rule {i} ({build}): {exc}") from None
    return out

"""Verifiable instructions found in a prompt, and whether an answer follows them.

Application prompts often carry constraints a program can check: a word limit, "no commas", "answer in
JSON", "end with the phrase ...", a number of bullet points. ``detect`` finds such instructions in the
system turns and the user's last turn (English wording, close to the IFEval catalogue); ``check`` returns
the share of them an answer satisfies. A prompt with none gets no opinion (None), not a zero.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from tao.prompts import Prompt

_NUMBERS = {
    w: i for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"])
}
_NUM = r"(\d+|" + "|".join(_NUMBERS) + r")"
_REL = (
    r"(at least|at most|no more than|no less than|not more than|fewer than|less than|more than|under|over|"
    r"maximum of|minimum of|exactly|a minimum of|a maximum of)"
)
_QUOTED = r"[\"“'‘]([^\"”'’]{1,80})[\"”'’]"


@dataclass(frozen=True)
class Instruction:
    kind: str  # e.g. "words", "no_comma"
    match: re.Match  # what was asked, as found in the prompt
    rule: Callable[[re.Match, str], bool]

    def check(self, answer: str) -> bool:
        return self.rule(self.match, answer)


def _num(text: str) -> int:
    return int(text) if text.isdigit() else _NUMBERS[text.lower()]


def _compare(count: int, relation: str, n: int) -> bool:
    relation = relation.lower().removeprefix("a ")
    if relation in ("at least", "no less than", "minimum of"):
        return count >= n
    if relation in ("at most", "no more than", "not more than", "maximum of"):
        return count <= n
    if relation in ("fewer than", "less than", "under"):
        return count < n
    if relation in ("more than", "over"):
        return count > n
    return count == n


def _words(text: str) -> int:
    return len(re.findall(r"\b[\w'-]+\b", text))


def _sentences(text: str) -> int:
    return len([s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if re.search(r"\w", s)])


def _paragraphs(text: str) -> int:
    return len([p for p in re.split(r"\n\s*\n|^\s*\*\*\*\s*$", text, flags=re.M) if p.strip()])


def _bullets(text: str) -> int:
    return len(re.findall(r"^\s*(?:[*•-]|\d+[.)])\s+\S", text, flags=re.M))


def _highlights(text: str) -> int:
    return len(re.findall(r"\*[^\n*]+\*", text))


def json_ok(text: str) -> bool:
    """The answer, optionally inside a ``` fence, parses as JSON."""
    body = re.sub(r"^\s*```(?:json)?\s*|\s*```\s*$", "", text.strip(), flags=re.I)
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _has_word(text: str, word: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(word.strip()) + r"(?!\w)", text, flags=re.I) is not None


def _count(text: str) -> int:
    return {"once": 1, "twice": 2, "thrice": 3}.get(text.lower()) or _num(text)


def _options(prompt: str) -> list[str]:
    """The fixed answers a prompt offers: quoted after "one of the following", else "My answer is ..." lines."""
    tail = re.split(r"one of the following (?:options|phrases|answers)", prompt, flags=re.I)[-1]
    quoted = _quoted_list(tail)
    return quoted or re.findall(r"my answer is (?:yes|no|maybe)\.?", prompt, flags=re.I)


def _occurrences(text: str, token: str) -> int:
    """Whole-word occurrences of a word, or occurrences of a single letter."""
    pattern = re.escape(token) if len(token) == 1 or not token.isalnum() else r"(?<!\w)" + re.escape(token) + r"(?!\w)"
    return len(re.findall(pattern, text, flags=re.I))


def _quoted_list(text: str) -> list[str]:
    return [q.strip() for q in re.findall(_QUOTED, text) if q.strip()]


def _bare_list(text: str) -> list[str]:
    parts = re.split(r",\s*|\s+and\s+|\s+or\s+", text.strip())
    return [p.strip(" .") for p in parts if p.strip(" .") and len(p.split()) <= 3]


# Each rule: a kind, a pattern searched in the prompt (case-insensitive), and a check of an answer
# against that match. Every rule that matches adds an instruction.
_Check = Callable[[re.Match, str], bool]
_LIST = _QUOTED.replace("(", "(?:", 1) + r"(?:,? ?(?:and |or )?)"  # a quoted item of a list, no group
_ASKED = r"(?:response|answer|reply|output|email|letter|message|essay|story|poem|\w+)"
_WHOLE = r"(?:your |the )?(?:entire |whole |full )?(?:response|answer|output|reply)"
_CAPS = r"(?:capital letters|caps|upper[- ]?case(?: letters)?)"
_NO = r"(?:do not|don't|never|avoid|without|should not|must not|cannot|can't)"

# fmt: off
_RULES: list[tuple[str, str, _Check]] = [
    ("no_comma", r"\b(?:no|without|avoid|refrain from)(?: using| the use of| any)* commas?\b|"
     r"(?:\bnot|\bnever|n't)(?: be)?(?: allowed to)? (?:use|include|contain|have|put)(?: any)? commas?\b",
     lambda m, a: "," not in a),
    ("lowercase", r"\b(?:in|using|use|with|write|written|respond|answer|reply) (?:all |only |entirely )?lower[- ]?case"
     r"|\b(?:all|entirely|only) lower[- ]?case\b|\blower[- ]?case (?:letters )?only\b|\bno capital letters\b|"
     r"\bnot use any capital letters\b|\bwithout (?:using )?(?:any )?capital letters\b",
     lambda m, a: a == a.lower() and re.search(r"[a-z]", a) is not None),
    ("uppercase", r"(?<!words )(?<!word )(?<!words with )(?<!word with )\b(?:(?:in|using|use|with|write|written|"
     r"respond|answer|reply) (?:all |only |entirely )?" + _CAPS + r"|all " + _CAPS + r"|capital letters only)\b"
     r"(?![^.]{0,60}\btimes\b)|\bcapitali[sz]e (?:all|every) (?:of )?(?:your |the )?(?:words|letters)\b",
     lambda m, a: a == a.upper() and re.search(r"[A-Z]", a) is not None),
    ("capital_words", r"\b(?:words? (?:with|in) (?:all )?(?:capital letters|caps|uppercase)|all-caps words|"
     r"capitali[sz]ed words)[^.]{0,60}?" + _REL + " " + _NUM + r"\b",
     lambda m, a: _compare(len(re.findall(r"\b[A-Z]{2,}\b", a)), m[1], _num(m[2]))),
    ("words", _REL + " " + _NUM + r" words\b(?! (?:in|with) (?:all )?(?:capital|caps))",
     lambda m, a: _compare(_words(a), m[1], _num(m[2]))),
    ("words", r"\b(\d+)\+ ?words?\b|\b(\d+) or more words\b|\b(\d+) words or more\b",
     lambda m, a: _words(a) >= int(m[1] or m[2] or m[3])),
    ("words", r"\b(\d+) words or (?:less|fewer)\b|\bno longer than (\d+) words\b|\banything longer than (\d+) words",
     lambda m, a: _words(a) <= int(m[1] or m[2] or m[3])),
    ("sentences", _REL + " " + _NUM + r" sentences?\b", lambda m, a: _compare(_sentences(a), m[1], _num(m[2]))),
    ("sentences", r"\b(\d+) or more sentences\b", lambda m, a: _sentences(a) >= int(m[1])),
    ("sentences", r"\b(\d+) to (\d+) sentences\b", lambda m, a: int(m[1]) <= _sentences(a) <= int(m[2])),
    ("sentences", r"\b(?:in|with|using) (?:only |just )?(?:one|a single) sentence\b|\b(?:one|single)-sentence\b",
     lambda m, a: _sentences(a) == 1),
    ("paragraphs", r"\b" + _NUM + r" paragraphs?\b", lambda m, a: _paragraphs(a) == _num(m[1])),
    ("bullets", r"\b" + _NUM + r" bullet(?: points?|s)\b", lambda m, a: _bullets(a) == _num(m[1])),
    ("json", r"\b(?:in|as) (?:a |the )?(?:valid )?json\b|\bjson format\b|\bwrap[^.]{0,40} in (?:a |the )?json\b|"
     r"\b(?:respond|answer|reply|output|return your (?:answer|response))(?: only)? (?:with|using) (?:a )?"
     r"(?:valid )?json\b",
     lambda m, a: json_ok(a)),
    ("end_with", r"\b(?:end|finish|conclude)s? (?:your |the |each |it |this )?" + _ASKED + r"? ?with (?:the |this )?"
     r"(?:exact )?(?:phrase|sentence|words?|question)?(?: of)?:? ?" + _QUOTED + r"|\blast (?:sentence|line|words?) "
     r"of " + _WHOLE + r" (?:should|must) be:? ?" + _QUOTED,
     lambda m, a: a.strip().rstrip("\"”'’ ").endswith((m[1] or m[2]).strip())),
    ("start_with", r"\b(?:start|begin)s? (?:your |the )?" + _ASKED + r"? ?with (?:the )?(?:exact )?"
     r"(?:word|phrase|sentence|letter)? ?" + _QUOTED,
     lambda m, a: a.strip().lstrip("\"“'‘ ").startswith(m[1].strip())),
    ("quotation", r"\b(?:wrap|put|enclose) " + _WHOLE + r"(?: \([^)]{0,80}\))? (?:with|in|inside|within) double "
     r"quot|" + _WHOLE + r" (?:is |should be |must be )?(?:wrapped|enclosed) (?:in|with|within) double quot|"
     r"\bdouble quot\w*(?: marks?)? around " + _WHOLE,
     lambda m, a: len(a.strip()) > 1 and a.strip()[0] in "\"“" and a.strip()[-1] in "\"”"),
    ("keywords", r"(?<!not )(?<!n't )(?<!never )\b(?:include|use|mention|contain)s? (?:the )?"
     r"(?:key ?words?|words?|terms?) ((?:" + _LIST + r")+)",
     lambda m, a: all(_has_word(a, w) for w in _quoted_list(m[1]))),
    ("keywords", r"\binclude (?:the )?keywords? ([\w ,'-]{1,80}?)(?: in (?:your|the) (?:response|answer))?(?=[.;\n]|$)",
     lambda m, a: all(_has_word(a, w) for w in _bare_list(m[1]))),
    ("keywords", r"(?<!not )(?<!n't )\bmention " + _QUOTED, lambda m, a: _has_word(a, m[1])),
    ("forbidden", r"\b" + _NO + r" (?:use |using |include |including |mention |mentioning |say |saying |contain )?"
     r"(?:the |any of the |any )?(?:key ?words?|words?|terms?) ((?:" + _LIST + r")+)",
     lambda m, a: not any(_has_word(a, w) for w in _quoted_list(m[1]))),
    ("forbidden", r"\b" + _NO + r" (?:use |using |include |including |mention |mentioning |say |saying |contain )?"
     r"(?:the following|any of the following) (?:key ?words?|words?|terms?):? ([\w ,'-]{1,120}?)(?=[.;\n]|$)",
     lambda m, a: not any(_has_word(a, w) for w in _bare_list(m[1]))),
    ("placeholders", r"\bat least " + _NUM + r" placeholders?\b",
     lambda m, a: len(re.findall(r"\[[^\[\]\n]+\]", a)) >= _num(m[1])),
    ("highlights", r"\b(?:highlight|italici[sz]e) (?:at least )?" + _NUM + r" (?:\w+ )?(?:sections?|parts?|phrases?)\b|"
     r"\b(?:at least )?" + _NUM + r" (?:\w+ )?sections? (?:should|must) be highlighted\b|\bat least " + _NUM
     + r" (?:italic|highlighted) (?:text )?(?:phrases?|sections?|parts?)\b",
     lambda m, a: _highlights(a) >= _num(m[1] or m[2] or m[3])),
    ("highlights", r"\bhighlight (?:some|a few) (?:words|phrases|parts|sections)\b", lambda m, a: _highlights(a) >= 1),
    ("title", r"<<[^>]*>>|\bdouble angular brackets\b", lambda m, a: re.search(r"<<[^\n<>]+>>", a) is not None),
    ("postscript", r"\b(?:postscript|p\.s\.)[^.]{0,40}?\b(?:starting|beginning|start|begin) with "
     r"[\"“']?(p\.\s?p\.\s?s|p\.\s?s)",
     lambda m, a: re.search(r"^\s*" + re.escape(m[1]).replace(r"\ ", r"\s?"), a, flags=re.I | re.M) is not None),
    ("frequency", r"\b(?:letter|word|keyword) (?!(?:should|must|appear|to|needs|will|for|in|with|count)\b)"
     r"[\"“'‘]?([\w#!]+)[\"”'’]?(?: (?:should|must|to|needs to|will))?"
     r"(?: appear| be used| occur)?(?: in (?:your|the) (?:entire )?response)?(?: for)? " + _REL + " "
     + r"(" + _NUM[1:-1] + r"|once|twice|thrice)(?: times?)?\b",
     lambda m, a: _compare(_occurrences(a, m[1]), m[2], _count(m[3]))),
    ("sections", r"\b" + _NUM + r"[ -](?:sections?|parts?|paragraphs?)\b[^.]{0,80}?\b(?:mark|label|note|start)\w*"
     r"(?: the beginning of)?(?: each (?:section|part|paragraph))?(?: should be)?(?: explicitly)? (?:with|as) "
     r"[\"“']?([A-Za-z]+) X\b",
     lambda m, a: len(re.findall(r"\b" + re.escape(m[2]) + r"\s+\w+", a)) >= _num(m[1])),
    ("options", r"\bone of the following (?:options|phrases|answers)\b|\bmy answer is (?:yes|no|maybe)\b",
     lambda m, a: any(o in a for o in _options(m.string))),
    ("two_responses", r"\btwo different responses\b|\bseparated? (?:them |the two \w+ |each \w+ )?(?:by|with) "
     r"(?:exactly )?(?:6|six) asterisks?\b|\b(?:two|2) \w+[^.]{0,40}?separated by \*{6}",
     lambda m, a: "******" in a and len([p for p in a.split("******") if p.strip()]) == 2),
]
# fmt: on
_COMPILED = [(kind, re.compile(pattern, re.I), check) for kind, pattern, check in _RULES]


# Kinds a prompt can ask for more than once with different arguments; any other kind counts once.
_REPEATABLE = {"words", "sentences", "keywords", "forbidden", "frequency"}


_QUESTION = re.compile(r"(?:how|what|why|when|where|which|who|whose)\b", re.I)


def _in_question(match: re.Match) -> bool:
    """The match is the topic of a question ("How do I convert a string to lowercase?", "explain how to avoid
    commas in CSV"), not an instruction about the answer."""
    start = max(match.string.rfind(c, 0, match.start()) for c in ".!?\n") + 1
    if _QUESTION.match(match.string[start:].lstrip(" \"'*-#0123456789)")):
        return True
    return re.search(r"\bhow (?:to|do i|can i|should i)\s*$", match.string[start : match.start()], re.I) is not None


def detect(prompt: Prompt) -> list[Instruction]:
    """Instructions in the system turns and the user's last turn (not in wh-questions about a topic)."""
    texts = [m.content for m in prompt.messages if m.role in ("system", "developer")] + [prompt.text]
    found: list[Instruction] = []
    seen: set[str] = set()
    for text in texts:
        for kind, pattern, check in _COMPILED:
            for match in pattern.finditer(text):
                key = f"{kind}:{match.group(0).lower()}" if kind in _REPEATABLE else kind
                if key not in seen and not _in_question(match):
                    seen.add(key)
                    found.append(Instruction(kind, match, check))
    return found


def follow_rate(prompt: Prompt, answer: str) -> float | None:
    """Share of the prompt's detected instructions the answer follows; None when there are none."""
    instructions = detect(prompt)
    if not instructions:
        return None
    return sum(i.check(answer) for i in instructions) / len(instructions)

"""Words: keywords to include or to avoid, how often a word or a letter appears."""

from __future__ import annotations

import re

from reward.instructions.wording import (
    BOUNDED,
    NO,
    NUM,
    QUOTE,
    QUOTED,
    RANGE,
    Found,
    compile_rules,
    count_bounds,
    listed,
    number,
)

LETTERS = "keywords:letter_frequency"
_KEYWORD_VERB = r"(?:include|use|mention|contain|have|has|incorporate)s?"


_NOT_COUNTED = r"(?!\s*(?:at least|at most|for|once|twice|thrice|\d+ times|less than|more than|each time|\d+ or))"


def _keywords(m: re.Match) -> Found:
    words = listed(m["list"])
    return [("keywords:existence", {"keywords": words})] if words else []


def _forbidden(m: re.Match) -> Found:
    words = [w.lower() for w in listed(m["list"])]
    return [("keywords:forbidden_words", {"forbidden_words": words})] if words else []


def _frequency(m: re.Match) -> Found:
    groups = m.groupdict()
    if not (groups.get("rel") or groups.get("post") or groups.get("low")) and "time" not in m.group(0).lower():
        return []  # "her name has 4 letters": a count in the topic, not a frequency asked of the answer
    word = (m["word"] or "").strip("\"“”'‘’` ")
    if not word or word.lower() in ("it", "this", "that", "them", "should", "for", "be", "in", "to", "must"):
        return []
    return [("keywords:frequency", {"relation": r, "keyword": word, "frequency": n}) for r, n in count_bounds(m)]


def _letter(m: re.Match) -> Found:
    letter = m["letter"].lower()
    return [
        ("keywords:letter_frequency", {"let_relation": r, "letter": letter, "let_frequency": n})
        for r, n in count_bounds(m)
    ]


def _no_letter(m: re.Match) -> Found:
    return [
        ("keywords:letter_frequency", {"let_relation": "less than", "letter": m["letter"].lower(), "let_frequency": 1})
    ]


def _symbol(m: re.Match) -> Found:
    symbol = "!" if "exclamation" in m.group(0).lower() else "#"
    return [
        ("keywords:letter_frequency", {"let_relation": r, "letter": symbol, "let_frequency": n})
        for r, n in count_bounds(m)
    ]


RULES = compile_rules(
    [
        (
            r"(?<!not )(?<!n't )(?<!never )\b"
            + _KEYWORD_VERB
            + r" (?:the |these |also )?(?:key ?words?|words?|terms?|line|"
            r"items)(?: the word)?:? (?P<list>(?:"
            + QUOTE
            + r"[^\"“”'‘’]{1,40}"
            + QUOTE
            + r"(?:,? ?(?:and |or )?))+)"
            + _NOT_COUNTED,
            _keywords,
        ),
        (
            r"(?<!not )(?<!n't )\b(?:include|includes|including) (?:the )?keywords? (?P<list>[\w ,'\[\]-]{1,80}?)"
            r"(?: in (?:the|your) (?:response|answer|resume))?(?=[.;\n]|$)",
            _keywords,
        ),
        (r"(?<!not )(?<!n't )\bmention (?:the name )?" + QUOTED.replace("(", "(?P<list>", 1) + _NOT_COUNTED, _keywords),
        (r"(?<!not )(?<!n't )\bmention (?:the name )?(?P<list>[A-Z]\w+) (?:only once|in)", _keywords),
        (
            r"(?<!not )\b(?:include|has|have) the words? "
            + QUOTED.replace("(", "(?P<list>", 1)
            + r"(?: and "
            + QUOTED
            + ")?"
            + _NOT_COUNTED,
            lambda m: [("keywords:existence", {"keywords": [w for w in (m["list"], m[2]) if w]})],
        ),
        (r"\binclude these items: (?P<list>[^.]{1,80})", _keywords),
        (
            r"\b"
            + NO
            + r" (?:to )?(?:use |using |include |including |mention |mentioning |say |saying |contain |containing )?"
            r"(?:the |any of the |any |negative )?(?:key ?words?|words?|terms?)(?: such as)?:? (?P<list>(?:"
            + QUOTE
            + r"[^\"“”'‘’]{1,40}"
            + QUOTE
            + r"(?:,? ?(?:and |or |etc\.?)?))+|\[[^\]]{1,80}\])",
            _forbidden,
        ),
        (
            r"\b" + NO + r" (?:use |using |include |including |mention |mentioning |say |saying |contain )?"
            r"(?:the following|any of the following|the) (?:key ?words?|words?|terms?):? (?P<list>[\w ,'-]{1,120}?)"
            r"(?= in (?:your|the|the advertisement)|[.;\n]|$| Mention)",
            _forbidden,
        ),
        (r"\b(?:do not|don't) (?:use|say|mention) (?P<list>" + QUOTED + r"(?: or " + QUOTED + r")?)", _forbidden),
        (r"\bavoid the keywords?:? (?P<list>(?:" + QUOTED + r",? ?)+)", _forbidden),
        (r"\bdo not mention (?P<list>\w+ and \w+)", _forbidden),
        (
            r"\bwithout (?:using |saying )?the words? (?P<list>(?:"
            + QUOTED
            + r"|\w+)(?: or (?:"
            + QUOTED
            + r"|\w+))?)",
            _forbidden,
        ),
        (r"\bthe word (?P<list>\w+) doesn't appear", _forbidden),
        (r"\bnot contain the words? (?P<list>(?:" + QUOTED + r"(?: and | or )?)+)", _forbidden),
        (
            r"\b(?:the )?(?:word|keyword|name) "
            + QUOTE
            + r"?(?P<word>[\w'-]+)"
            + QUOTE
            + r"?(?: (?:should|must|to|needs "
            r"to|will))?(?: appear| be used| occur| show up)?(?: in (?:your|the) (?:entire )?response)?(?: for)? "
            r"(?:" + RANGE + r"|" + BOUNDED + r")(?: times?)?\b",
            _frequency,
        ),
        (
            r"\b(?:use|include|includes|mention|using|uses)(?: of)? (?:the )?(?:word|keyword|name) "
            + QUOTE
            + r"?(?P<word>[\w'-]+)"
            + QUOTE
            + r"?(?: each time)?(?: for)? (?:"
            + BOUNDED
            + r")(?: times?)?\b",
            _frequency,
        ),
        (
            r"\bthe word "
            + QUOTE
            + r"?(?P<word>\w+)"
            + QUOTE
            + r"?[^.]{0,30}?(?:appears?|appearing) (?:"
            + RANGE
            + r"|"
            + BOUNDED
            + r")(?: times?)?\b",
            _frequency,
        ),
        (
            r"\b(?:letter|character) "
            + QUOTE
            + r"?(?P<letter>[a-z#!])"
            + QUOTE
            + r"?(?: should| must| to)?(?: appear| show up"
            r"| be used)?(?: in (?:your|the) (?:entire )?(?:response|reply|answer))?(?: for)? (?:"
            + BOUNDED
            + r")(?: times?)?"
            r"\b",
            _letter,
        ),
        (r"\bletter (?P<letter>[a-z])\b[^.]{0,40}?(?:appears?|appearing|appear) (?:" + BOUNDED + r")", _letter),
        (
            r"\b(?:use|using|include|includes|contain|contains) the letter "
            + QUOTE
            + r"?(?P<letter>[a-z])"
            + QUOTE
            + r"? (?:"
            + BOUNDED
            + r")(?: times?)?\b",
            _letter,
        ),
        (
            r"\bavoid using the letter (?P<letter>[a-z]) more than (?P<n>\d+|" + NUM[1:-1] + r")",
            lambda m: [
                (
                    "keywords:letter_frequency",
                    {"let_relation": "less than", "letter": m["letter"].lower(), "let_frequency": number(m["n"]) + 1},
                )
            ],
        ),
        (
            r"\b(?:do not|don't|without)(?: include| contain| using| use)? the letter "
            + QUOTE
            + r"?(?P<letter>[a-z])\b",
            _no_letter,
        ),
        (r"\b(?:" + BOUNDED + r") (?:exclamation marks?|hashtags?)", _symbol),
    ]
)

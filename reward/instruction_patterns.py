"""The wordings ``rule:instructions`` recognises, each turned into IFEval's instruction ids and arguments.

A rule is a pattern searched in a prompt (case-insensitive) and a function from its match to instructions, each
an (instruction id, arguments) pair. The wordings follow IFEval's catalogue and the ways people phrase the same
requests ("under 50 words", "50 words or fewer", "between 100 and 200 words"). IFEval's counts have two relations,
"less than" and "at least"; the others are stated in them ("at most 50" is "less than 51", "exactly 3" is both "at
least 3" and "less than 4").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from if_verifiable.ifeval.instructions_util import LANGUAGE_CODES

Found = list[tuple[str, dict[str, Any]]]
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
# How a count is bounded, before the number (e.g. "at least 3") or after it ("3 or more")
REL = (
    r"(at least|at most|no more than|no less than|not more than|not less than|fewer than|less than|more than|"
    r"under|over|below|above|exceeding|maximum of|minimum of|a maximum of|a minimum of|up to|exactly|only|just|"
    r"a total of|in total|less than a total of)"
)
POST = r"(or more|or fewer|or less|or above|or below|\+|and above|or greater|at most|at least|max|maximum|minimum)"
QUOTE = r"[\"“”'‘’`]"
QUOTED = QUOTE + r"([^\"“”'‘’`\n]{1,120}?)" + QUOTE


def number(text: str) -> int:
    text = text.lower().strip()
    return int(text) if text.isdigit() else _NUMBERS[text]


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


def _range(low: str, high: str) -> list[tuple[str, int]]:
    return [("at least", number(low)), ("less than", number(high) + 1)]


def _count(m: re.Match) -> list[tuple[str, int]]:
    """Bounds from a match with groups rel, n, post (``n`` alone means exactly) or low, high (a range)."""
    groups = m.groupdict()
    if groups.get("low"):
        return _range(groups["low"], groups["high"])
    return bounds(groups.get("rel"), number(groups["n"]), groups.get("post"))


def _counted(ident: str, relation: str, threshold: str) -> Build:
    return lambda m: [(ident, {relation: r, threshold: n}) for r, n in _count(m)]


def _listed(text: str) -> list[str]:
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


_SPAN = r"[^.!?\n]{0,80}?"  # within one sentence
_RANGE = r"(?:between )?(?P<low>\d+|" + NUM[1:-1] + r") (?:to|-|and|or) (?P<high>\d+|" + NUM[1:-1] + r")"
_BOUNDED = r"(?:(?P<rel>" + REL[1:-1] + r") )?(?P<n>" + NUM[1:-1] + r")(?:\s?(?P<post>" + POST[1:-1] + r"))?"


def _words(m: re.Match) -> Found:
    if not (m.groupdict().get("rel") or m.groupdict().get("post") or m.groupdict().get("low")):
        return []  # "a 200-word essay" names a length but no bound (IFEval's labels mostly leave it out)
    return [("length_constraints:number_words", {"relation": r, "num_words": n}) for r, n in _count(m)]


def _sentences(m: re.Match) -> Found:
    groups = m.groupdict()
    bare = not (groups.get("rel") or groups.get("post") or groups.get("low"))
    if bare and not _before(
        m, r"\b(?:in|with|of|contains?|have|has|using|use|into|be|exactly|organize \w+ \w+ in)\s*$"
    ):
        return []  # "edits 1000 sentences a week" is a topic, not a bound on the answer
    return [("length_constraints:number_sentences", {"relation": r, "num_sentences": n}) for r, n in _count(m)]


def _frequency(m: re.Match) -> Found:
    groups = m.groupdict()
    if not (groups.get("rel") or groups.get("post") or groups.get("low")) and "time" not in m.group(0).lower():
        return []  # "her name has 4 letters": a count in the topic, not a frequency asked of the answer
    word = (m["word"] or "").strip("\"“”'‘’` ")
    if not word or word.lower() in ("it", "this", "that", "them", "should", "for", "be", "in", "to", "must"):
        return []
    return [("keywords:frequency", {"relation": r, "keyword": word, "frequency": n}) for r, n in _count(m)]


def _letter(m: re.Match) -> Found:
    letter = m["letter"].lower()
    return [
        ("keywords:letter_frequency", {"let_relation": r, "letter": letter, "let_frequency": n}) for r, n in _count(m)
    ]


def _no_letter(m: re.Match) -> Found:
    return [
        ("keywords:letter_frequency", {"let_relation": "less than", "letter": m["letter"].lower(), "let_frequency": 1})
    ]


def _symbol(m: re.Match) -> Found:
    symbol = "!" if "exclamation" in m.group(0).lower() else "#"
    return [
        ("keywords:letter_frequency", {"let_relation": r, "letter": symbol, "let_frequency": n}) for r, n in _count(m)
    ]


def _capital_words(m: re.Match) -> Found:
    out = [
        ("change_case:capital_word_frequency", {"capital_relation": r, "capital_frequency": n}) for r, n in _count(m)
    ]
    return out


def _some_capital_words(m: re.Match) -> Found:
    return [("change_case:capital_word_frequency", {"capital_relation": "at least", "capital_frequency": 1})]


def _keywords(m: re.Match) -> Found:
    words = _listed(m["list"])
    return [("keywords:existence", {"keywords": words})] if words else []


def _forbidden(m: re.Match) -> Found:
    words = [w.lower() for w in _listed(m["list"])]
    return [("keywords:forbidden_words", {"forbidden_words": words})] if words else []


def _end(m: re.Match) -> Found:
    phrase = (m["phrase"] or "").strip()
    return [("startend:end_checker", {"end_phrase": phrase})] if phrase else []


def _sections(m: re.Match) -> Found:
    splitter = m["splitter"]
    count = m["n"] or m["n2"]
    if not count:  # the number of sections is said before, e.g. "Write a joke in 3 sections. Mark each with ..."
        said = re.findall(r"\b" + NUM + r"[ -](?:sections?|paragraphs?|parts?)\b", m.string[: m.start()], re.I)
        count = said[-1] if said else None
    found = re.findall(r"\b" + re.escape(splitter) + r"\s+\d+\b", m.string)
    n = number(count) if count else len(set(found))
    return [("detectable_format:multiple_sections", {"section_spliter": splitter, "num_sections": n})] if n else []


_LANGUAGE_NAMES = {name.lower(): code for code, name in LANGUAGE_CODES.items() if code != "en"}
_LANGUAGE_NAMES["farsi"] = "fa"


def _language(m: re.Match) -> Found:
    return [("language:response_language", {"language": _LANGUAGE_NAMES[m["lang"].lower()]})]


def _paragraphs(m: re.Match) -> Found:
    """N paragraphs: IFEval counts those separated by ***; with two new lines as separator, the first-word rule
    (below) carries the count; otherwise tao counts blocks separated by blank lines."""
    n = number(m["n"])
    text = m.string
    if _DIVIDER.search(text):
        return [("length_constraints:number_paragraphs", {"num_paragraphs": n})]
    if _FIRST_WORD.search(text):
        return []
    if re.search(r"\bsections? (?:marked|labell?ed|starting)|\b(?:paragraph|section) x\b", text, re.I):
        return []
    return [("tao:paragraphs", {"num_paragraphs": n})]


_DIVIDER = re.compile(r"(?<!\*)\*\*\*(?!\*)|markdown divider|(?<!6 )(?<!six )asterisk (?:symbols|markers)", re.I)


def _divided(m: re.Match) -> Found:
    """Parts separated by ***, their number not said with the word paragraph: the one said with sections, parts,
    steps or stanzas, else the parts of the example given (one more than its separators)."""
    text = m.string
    if re.search(r"\b" + NUM + r"[ -](?:paragraphs?)\b", text, re.I):
        return []  # the paragraph rule has it
    said = re.search(
        r"\b(?:exactly |at least |into |first |in )?" + NUM + r" (?:sections|parts|steps|stanzas|advice|Q and As)"
        r"\b",
        text,
        re.I,
    )
    if said:
        n = number(said[1])
    elif re.search(r"thinking and the final answer", text, re.I):
        n = 2
    else:
        example = text[m.start() :]
        n = len(re.findall(r"(?<!\*)\*\*\*(?!\*)", example)) + 1
        if n < 2:
            return []
    return [("length_constraints:number_paragraphs", {"num_paragraphs": n})]


_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8}
_FIRST_WORD = re.compile(
    r"\b(?:(?:the (?:very )?)?(?P<ord>first|second|third|fourth|fifth|sixth|seventh|eighth|last|\d+(?:st|nd|rd|th)) "
    r"paragraph|paragraph (?P<num>\d+))(?: must| should| needs to)? (?:start|begin)s? with(?: the word)? "
    + QUOTE
    + r"?(?P<word>[A-Za-z'-]+)|\bstart (?:the )?(?:(?P<ord2>first|second|third|fourth|fifth|sixth|\d+(?:st|nd|rd|th)) "
    r"paragraph|paragraph (?P<num2>\d+)) with(?: the word)? " + QUOTE + r"?(?P<word2>[A-Za-z'-]+)",
    re.I,
)


def _first_word(m: re.Match) -> Found:
    total = re.search(r"\b(?:exactly )?" + NUM + r"[ -]paragraphs?\b", m.string, re.I)
    if not total:
        return []
    n = number(total[1])
    which = (m["ord"] or m["ord2"] or "").lower()
    nth = int(m["num"] or m["num2"] or 0) or (n if which == "last" else _ORDINALS.get(which) or int(which[:-2] or 0))
    word = (m["word"] or m["word2"]).lower()
    return [
        ("length_constraints:nth_paragraph_first_word", {"first_word": word, "num_paragraphs": n, "nth_paragraph": nth})
    ]


def _repeat(m: re.Match) -> Found:
    """IFEval's repeat-the-request: the request is the quoted text, else the text before the instruction, else
    (a request 'below') the text after the instruction's sentences."""
    text = m.string
    quoted = re.match(r"\s*" + QUOTE + r"(.{5,}?)" + QUOTE, text[m.end() :])
    if quoted:
        return [("combination:repeat_prompt", {"prompt_to_repeat": quoted[1]})]
    start = max(text.rfind(c, 0, m.start()) for c in ".!?\n") + 1  # the instruction's sentence starts here
    before = text[:start].strip()
    if len(before) > 10 and not re.search(r"\b(?:below|following)\b", m.group(0), re.I):
        return [("combination:repeat_prompt", {"prompt_to_repeat": before})]
    sentences = re.split(r"(?<=[.!?])\s+", text[m.start() :])
    rest = [s for s in sentences if not re.search(r"repeat|do not say|don't say|before|request", s, re.I)]
    request = " ".join(rest).strip()
    return [("combination:repeat_prompt", {"prompt_to_repeat": request})] if len(request) > 10 else []


def _before(m: re.Match, pattern: str, span: int = 30) -> bool:
    """``pattern`` occurs in the ``span`` characters before the match (within its sentence)."""
    head = m.string[max(0, m.start() - span) : m.start()]
    head = re.split(r"[.!?\n]", head)[-1]
    return re.search(pattern, head, re.I) is not None


def _fixed(ident: str, **kwargs: Any) -> Build:
    return lambda m: [(ident, dict(kwargs))]


_NO = r"(?:do not|don't|dont|never|avoid|without|should not|shouldn't|must not|mustn't|cannot|can't|not|refrain from)"
_WHOLE = r"(?:your |the |my )?(?:entire |whole |full |complete )?(?:response|answer|output|reply|email|text|essay|poem)"
_CAPS = r"(?:capital letters|caps|capitals|upper[- ]?case(?: letters)?|capitalized letters)"
_KEYWORD_VERB = r"(?:include|use|mention|contain|have|has|incorporate)s?"
# a count follows: a frequency, not mere existence
_NOT_COUNTED = r"(?!\s*(?:at least|at most|for|once|twice|thrice|\d+ times|less than|more than|each time|\d+ or))"

_RAW: list[tuple[str, Build]] = [
    # punctuation
    (
        r"\b(?:no|without|avoid|refrain from)(?: using| the use of|"
        r" any| including)* commas?\b|\bcommas? (?:are|is) not "
        r"allowed\b|(?:\bnot|\bnever|n't)(?: be)?(?: allowed to)? (?:use|include|contain|have|put)(?: any)? commas?\b",
        _fixed("punctuation:no_comma"),
    ),
    # case
    (
        r"\b(?:in|using|use|with|write|written|respond|answer|reply|"
        r"be|only use) (?:all |only |entirely )?lower[- ]?case"
        r"(?! letters? (?:and|or))|\b(?:all|entirely|only|in) lower[- ]?case(?:s)?\b|\blower[- ]?case (?:letters )?only"
        r"|\bno capital letters\b|\bnot use any capital letters\b|\bwithout (?:using )?(?:any )?capital letters\b|"
        r"\bno capitali[sz]ations?\b|\bnot a single letter[^.]{0,40}capitali[sz]ed|\bletters lower[- ]?cased\b|"
        r"\bno capital letters (?:are|is) (?:allowed|used)\b|\bhave no capital letters\b",
        _fixed("change_case:english_lowercase"),
    ),
    (
        r"(?<!words )(?<!word )(?<!words with )(?<!word with "
        r")(?<!words in )(?<!word in )\b(?:(?:in|using|use|with|write"
        r"|written|respond|answer|reply) (?:all |only |entirely )?"
        + _CAPS
        + r"|all "
        + _CAPS
        + r"|capital letters only"
        r"|"
        + _CAPS
        + r" only)\b(?![^.]{0,60}\b(?:times|words?)\b)|\bcapitali[sz]e (?:all|every) (?:of )?(?:your |the )?"
        r"(?:words|letters)\b|\bno lower[- ]?case letters\b",
        lambda m: [] if _before(m, r"\bwords?\b|\bwithout|\bno\b|phrases") else [("change_case:english_capital", {})],
    ),
    (
        r"\b(?:words? (?:with|in) (?:all )?"
        + _CAPS
        + r"|all-caps words|capitali[sz]ed words|words? (?:with|in) capital"
        r" letters)"
        + _SPAN
        + r"\b(?:(?:for )?"
        + _BOUNDED
        + r"(?: times?)?|(?:should be |between )?"
        + _RANGE
        + r")\b",
        _counted("change_case:capital_word_frequency", "capital_relation", "capital_frequency"),
    ),
    (
        r"\b"
        + _BOUNDED
        + r" (?:words|words or phrases) (?:in (?:the output )?)?(?:should be |be )?(?:in|with) (?:all )?"
        + _CAPS,
        _counted("change_case:capital_word_frequency", "capital_relation", "capital_frequency"),
    ),
    (
        r"\b(?:limit the number of words with all capital letters to|stress words for) " + _BOUNDED,
        _counted("change_case:capital_word_frequency", "capital_relation", "capital_frequency"),
    ),
    (
        r"\b" + _RANGE + r" such capitali[sz]ed words",
        _counted("change_case:capital_word_frequency", "capital_relation", "capital_frequency"),
    ),
    (
        r"\b(?:have|use|include) (?P<rel>more than|at least|fewer than|less than) (?P<n>\d+|"
        + NUM[1:-1]
        + r") words be"
        r" in all " + _CAPS,
        _counted("change_case:capital_word_frequency", "capital_relation", "capital_frequency"),
    ),
    (
        r"\b(?:use|include|add|capitali[sz]e) (?:some|a few) (?:stress )?words\b[^.]{0,30}\b(?:in all "
        + _CAPS
        + r"|capitali[sz]ed|to stress)|\badd stress words which are capitali[sz]ed|\buse words (?:with|in) all "
        + _CAPS
        + r" to (?:highlight|make|stress)",
        _some_capital_words,
    ),
    # length
    (r"\b" + _BOUNDED + r"[ -]words?\b(?![^.]{0,45}\b(?:capital|caps))(?! or phrases)", _words),
    (r"\b" + _RANGE + r" words\b", _words),
    (
        r"\b(?P<n>\d+) words or (?P<post>less|fewer|more)\b",
        lambda m: [
            ("length_constraints:number_words", {"relation": r, "num_words": n})
            for r, n in bounds(None, int(m["n"]), "or " + m["post"])
        ],
    ),
    (
        r"\b(?:no longer than|anything longer than|longer than) (?P<n>\d+) words",
        lambda m: [("length_constraints:number_words", {"relation": "less than", "num_words": int(m["n"]) + 1})],
    ),
    (
        r"\btotal number of words[^.]{0,40}? (?P<n>\d+) or more\b",
        lambda m: [("length_constraints:number_words", {"relation": "at least", "num_words": int(m["n"])})],
    ),
    (r"\b(?<!first )(?<!the )" + _BOUNDED + r" sentences?\b", _sentences),
    (r"\b" + _RANGE + r" sentences\b", _sentences),
    (r"\bsentences[^.]{0,40}in the range of " + _RANGE, _sentences),
    (
        r"\b(?:in|with|using) (?:only |just )?(?P<n>one|a single) sentence\b|\b(?P<n2>one|single)-sentence\b",
        lambda m: (
            [("length_constraints:number_sentences", {"relation": r, "num_sentences": 1}) for r in ("at least",)]
            + [("length_constraints:number_sentences", {"relation": "less than", "num_sentences": 2})]
        ),
    ),
    (r"\bunder (?P<n>\d+) sentences", _sentences),
    # paragraphs and sections
    (
        r"\b(?:exactly |in |of |with |into )?(?P<n>\d+|" + NUM[1:-1] + r")[ -](?:paragraphs?|parts|stanzas)\b",
        _paragraphs,
    ),
    (r"\binto (?P<n>\d+|" + NUM[1:-1] + r") parts\b", _paragraphs),
    (r"\bformat\b[^*]{0,120}?(?<!\*)\*\*\*(?!\*)", _divided),
    (
        r"(?:separat\w+|divider|separator)[^.]{0,100}?(?<!\*)\*\*\*(?!\*)|(?<!\*)\*\*\*(?!\*) as the section separator|"
        r"(?:separat\w+|divider)[^.]{0,40}\b(?:3|three) asterisk",
        _divided,
    ),
    (_FIRST_WORD.pattern, _first_word),
    (
        r"\b(?:(?P<n>\d+|"
        + NUM[1:-1]
        + r")[ -](?:sections?|parts?|paragraphs?)\b[^.]{0,120}?|)\b(?:mark|label|note|start"
        r"|begin)\w*(?: the beginning of)?(?: each (?:section|part|paragraph))?(?: should be)?(?: explicitly)?"
        r"(?: (?:with|as))? [\"“']?(?P<splitter>[A-Za-z]+) X\b(?P<n2>)",
        _sections,
    ),
    (
        r"\b(?:(?P<n>\d+|" + NUM[1:-1] + r") sections?)[^.]{0,60}?\b(?:starting|each section starting|marked) with "
        r"[\"“']?(?P<splitter>Section|SECTION|Day|Part|PART|Chapter)\b(?: X| \d)(?P<n2>)",
        _sections,
    ),
    (r"\b(?P<n>two|three|four|five|\d+) sections:? [\"“(]?(?P<splitter>SECTION|Section) 1(?P<n2>)", _sections),
    (r"\b(?P<n>two|three|four|five|\d+) sections \((?P<splitter>Section|SECTION) 1(?P<n2>)", _sections),
    # bullets, highlights, placeholders, title, postscript, json, quotation
    (
        r"\b(?:exactly |of |in the format of |include |contain )?(?P<n>\d+|" + NUM[1:-1] + r") (?:very short |short )?"
        r"bullet(?: points?|s)\b",
        lambda m: [("detectable_format:number_bullet_lists", {"num_bullets": number(m["n"])})],
    ),
    (
        r"\b(?:highlight|italici[sz]e|bold)\w*(?:/bold)? (?:at least )?(?P<n>\d+|"
        + NUM[1:-1]
        + r") (?:\w+ )?(?:sections?"
        r"|parts?|phrases?|keywords?|words?)\b|\b(?:at least )?(?P<n2>\d+|"
        + NUM[1:-1]
        + r") (?:\w+ )?sections? (?:should|"
        r"must) be highlighted\b|\b(?:at least |include )?(?P<n3>\d+|"
        + NUM[1:-1]
        + r") (?:italic|highlighted) (?:text )?"
        r"(?:phrases?|sections?|parts?)\b|\bhighlight\w*(?:/bold)? at least (?P<n4>one|\d+) section",
        lambda m: [
            (
                "detectable_format:number_highlighted_sections",
                {"num_highlights": number(m["n"] or m["n2"] or m["n3"] or m["n4"])},
            )
        ],
    ),
    (
        r"\bhighlight (?:some|a few) (?:words|phrases|parts|sections)\b",
        _fixed("detectable_format:number_highlighted_sections", num_highlights=1),
    ),
    (
        r"\b(?:at least )?(?P<n>\d+|" + NUM[1:-1] + r") placeholders?\b|\bat least (?P<n2>one|a) placeholder\b",
        lambda m: [("detectable_content:number_placeholders", {"num_placeholders": number(m["n"] or "1")})],
    ),
    (r"<<[^>]*>>|\bdouble angular brackets\b", _fixed("detectable_format:title")),
    (
        r"\b(?:postscript|post script|p\.s\.|note)[^.]{0,40}?\b(?:starting|"
        r"beginning|start|begin|indicated) (?:with|by) "
        r"[\"“']?(?P<marker>p\.\s?p\.\s?s\.?|p\.\s?s\.?)|\bwith an? (?P<marker2>p\.p\.s|p\.s\.)",
        lambda m: [
            (
                "detectable_content:postscript",
                {"postscript_marker": "P.P.S" if "p.p" in (m["marker"] or m["marker2"]).lower() else "P.S."},
            )
        ],
    ),
    (
        r"\b(?:in|as) (?:a |the )?(?:valid )?json\b|\bjson format\b|\bwrap[^.]{0,40} in (?:a |the )?json\b|"
        r"\b(?:respond|answer|reply|output|return your (?:answer|response))(?: only)? (?:with|using) (?:a )?"
        r"(?:valid )?json\b",
        _fixed("detectable_format:json_format"),
    ),
    (
        r"\b(?:wrap|put|enclose|place)\w* "
        + _WHOLE
        + r"(?: \([^)]{0,80}\))? (?:with|in|inside|within) double quot|"
        + _WHOLE
        + r" (?:is |should be |must be |be )?(?:wrapped|enclosed) (?:in|with|within) double quot|"
        r"\bdouble quot\w*(?: marks?)? (?:around|should be placed around) " + _WHOLE + r"|\bdouble quot\w*(?: marks?)? "
        r"around (?:your |the )?(?:entire |whole )?(?:one-sentence "
        r")?(?:response|answer|reply)|\bbe wrapped with double quot",
        _fixed("startend:quotation"),
    ),
    # start and end
    (
        r"\b(?:end|finish|conclude)s? (?:your |the |each |it |this )?(?:whole |entire )?(?:\w+ ){0,2}?with:? "
        r"(?:exactly )?(?:the |this )?(?:exact |following )?(?:phrase|sentence|words?|question)?(?: of)?:? ?"
        + QUOTED.replace("(", "(?P<phrase>", 1),
        _end,
    ),
    (
        r"\b(?:end|finish)s? (?:your |the )?(?:whole |entire "
        r")?(?:response|answer|reply)? ?with:? (?:the |this )?(?:exact )?"
        r"(?:phrase|question|sentence)?:? ?(?P<phrase>[A-Z][^\"\n]{3,80}?[.?!])(?=\s|$)",
        _end,
    ),
    (r"\blast sentence of " + _WHOLE + r" (?:should|must) be:? ?" + QUOTED.replace("(", "(?P<phrase>", 1), _end),
    (
        r"\b(?:start|begin)s? (?:your |the )?\w*? ?with (?:the )?(?:exact )?(?:word|phrase|sentence|letter)? ?"
        + QUOTED,
        lambda m: (
            [] if _before(m, r"paragraph|section") or m[1].endswith(" X") else [("tao:start_with", {"phrase": m[1]})]
        ),
    ),
    # keywords
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
        + _NO
        + r" (?:to )?(?:use |using |include |including |mention |mentioning |say |saying |contain |containing )?"
        r"(?:the |any of the |any |negative )?(?:key ?words?|words?|terms?)(?: such as)?:? (?P<list>(?:"
        + QUOTE
        + r"[^\"“”'‘’]{1,40}"
        + QUOTE
        + r"(?:,? ?(?:and |or |etc\.?)?))+|\[[^\]]{1,80}\])",
        _forbidden,
    ),
    (
        r"\b" + _NO + r" (?:use |using |include |including |mention |mentioning |say |saying |contain )?"
        r"(?:the following|any of the following|the) (?:key ?words?|words?|terms?):? (?P<list>[\w ,'-]{1,120}?)"
        r"(?= in (?:your|the|the advertisement)|[.;\n]|$| Mention)",
        _forbidden,
    ),
    (r"\b(?:do not|don't) (?:use|say|mention) (?P<list>" + QUOTED + r"(?: or " + QUOTED + r")?)", _forbidden),
    (r"\bavoid the keywords?:? (?P<list>(?:" + QUOTED + r",? ?)+)", _forbidden),
    (r"\bdo not mention (?P<list>\w+ and \w+)", _forbidden),
    (
        r"\bwithout (?:using |saying )?the words? (?P<list>(?:" + QUOTED + r"|\w+)(?: or (?:" + QUOTED + r"|\w+))?)",
        _forbidden,
    ),
    (r"\bthe word (?P<list>\w+) doesn't appear", _forbidden),
    (r"\bnot contain the words? (?P<list>(?:" + QUOTED + r"(?: and | or )?)+)", _forbidden),
    # frequencies
    (
        r"\b(?:the )?(?:word|keyword|name) " + QUOTE + r"?(?P<word>[\w'-]+)" + QUOTE + r"?(?: (?:should|must|to|needs "
        r"to|will))?(?: appear| be used| occur| show up)?(?: in (?:your|the) (?:entire )?response)?(?: for)? "
        r"(?:" + _RANGE + r"|" + _BOUNDED + r")(?: times?)?\b",
        _frequency,
    ),
    (
        r"\b(?:use|include|includes|mention|using|uses)(?: of)? (?:the )?(?:word|keyword|name) "
        + QUOTE
        + r"?(?P<word>[\w'-]+)"
        + QUOTE
        + r"?(?: each time)?(?: for)? (?:"
        + _BOUNDED
        + r")(?: times?)?\b",
        _frequency,
    ),
    (
        r"\bthe word "
        + QUOTE
        + r"?(?P<word>\w+)"
        + QUOTE
        + r"?[^.]{0,30}?(?:appears?|appearing) (?:"
        + _RANGE
        + r"|"
        + _BOUNDED
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
        + _BOUNDED
        + r")(?: times?)?"
        r"\b",
        _letter,
    ),
    (r"\bletter (?P<letter>[a-z])\b[^.]{0,40}?(?:appears?|appearing|appear) (?:" + _BOUNDED + r")", _letter),
    (
        r"\b(?:use|using|include|includes|contain|contains) the letter "
        + QUOTE
        + r"?(?P<letter>[a-z])"
        + QUOTE
        + r"? (?:"
        + _BOUNDED
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
        r"\b(?:do not|don't|without)(?: include| contain| using| use)? the letter " + QUOTE + r"?(?P<letter>[a-z])\b",
        _no_letter,
    ),
    (r"\b(?:" + _BOUNDED + r") (?:exclamation marks?|hashtags?)", _symbol),
    # languages, repetition, fixed options, two responses
    (
        r"\b(?:in|using|use|answer in|respond in|be in|entirely in|only in|written in)(?: only| entirely)?(?: the)? "
        r"(?P<lang>" + "|".join(_LANGUAGE_NAMES) + r")\b(?=[^.]{0,60}(?:no other language|only|language|throughout))|"
        r"\b(?:entire|entirely|whole|only|completely)\b[^.]{0,40}?\b(?:in|use) (?:only )?(?:the )?(?P<lang2>"
        + "|".join(_LANGUAGE_NAMES)
        + r")\b|\b(?P<lang3>"
        + "|".join(_LANGUAGE_NAMES)
        + r") (?:language )?only\b|"
        r"\boutside of (?P<lang4>" + "|".join(_LANGUAGE_NAMES) + r")",
        lambda m: _language(_Renamed(m, lang=m["lang"] or m["lang2"] or m["lang3"] or m["lang4"])),
    ),
    (
        r"\b(?:first,? )?repeat (?:the|this|it|my) (?:exact |entire )?(?:request|sentence|question|prompt|instruction)?"
        r"(?: above| below| itself)?|\brepeat (?=" + QUOTE + r")|\brepeat the request",
        _repeat,
    ),
    (r"\bmy answer is (?:yes|no|maybe)\b", _fixed("detectable_format:constrained_response")),
    (r"\bone of the following (?:options|phrases|answers)\b(?![^.\n]{0,40}my answer is)", lambda m: _options(m)),
    (
        r"\btwo different responses\b|\bseparated? (?:them |the two "
        r"\w+ |each \w+ |your two \w+ |those two \w+ )?(?:by|with|"
        r"using) (?:exactly )?(?:6|six) asterisks?\b|\b(?:two|2) \w+[^.]{0,60}?(?:separated by|with) \*{6}|"
        r"\bseparated? [^.]{0,60}(?:6|six) asterisk|\bfollowing 6 asterisk|\*{6}",
        _fixed("combination:two_responses"),
    ),
]


def _options(m: re.Match) -> Found:
    tail = m.string[m.end() :]
    quoted = [q.strip() for q in re.findall(QUOTED, tail) if q.strip()]
    if not quoted or any(q.lower().startswith("my answer is") for q in quoted):
        return []
    return [("tao:options", {"options": quoted})]


class _Renamed:
    """A match whose named groups are seen under other names (several alternatives feed one builder)."""

    def __init__(self, match: re.Match, **names: str | None):
        self.match, self.names, self.string = match, names, match.string

    def __getitem__(self, key: str) -> Any:
        return self.names[key] if key in self.names else self.match[key]

    def groupdict(self) -> dict[str, Any]:
        return {**self.match.groupdict(), **self.names}

    def group(self, index: int) -> str:
        return self.match.group(index)


def _compile(i: int, p: str) -> re.Pattern:
    try:
        return re.compile(p, re.I)
    except re.error as exc:
        raise RuntimeError(f"rule {i}: {exc}") from None


RULES: list[tuple[re.Pattern, Build]] = [(_compile(i, p), build) for i, (p, build) in enumerate(_RAW)]

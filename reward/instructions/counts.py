"""Counts: words, sentences, paragraphs, sections, bullet points, highlights, placeholders."""

from __future__ import annotations

import re

from reward.instructions.wording import (
    BOUNDED,
    NUM,
    QUOTE,
    RANGE,
    Found,
    bounds,
    compile_rules,
    count_bounds,
    fixed,
    number,
    said_before,
)


def _words(m: re.Match) -> Found:
    if not (m.groupdict().get("rel") or m.groupdict().get("post") or m.groupdict().get("low")):
        return []  # "a 200-word essay" names a length but no bound (IFEval's labels mostly leave it out)
    return [("length_constraints:number_words", {"relation": r, "num_words": n}) for r, n in count_bounds(m)]


def _sentences(m: re.Match) -> Found:
    groups = m.groupdict()
    bare = not (groups.get("rel") or groups.get("post") or groups.get("low"))
    if bare and not said_before(
        m, r"\b(?:in|with|of|contains?|have|has|using|use|into|be|exactly|organize \w+ \w+ in)\s*$"
    ):
        return []  # "edits 1000 sentences a week" is a topic, not a bound on the answer
    return [("length_constraints:number_sentences", {"relation": r, "num_sentences": n}) for r, n in count_bounds(m)]


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


def _sections(m: re.Match) -> Found:
    splitter = m["splitter"]
    count = m["n"] or m["n2"]
    if not count:  # the number of sections is said before, e.g. "Write a joke in 3 sections. Mark each with ..."
        said = re.findall(r"\b" + NUM + r"[ -](?:sections?|paragraphs?|parts?)\b", m.string[: m.start()], re.I)
        count = said[-1] if said else None
    found = re.findall(r"\b" + re.escape(splitter) + r"\s+\d+\b", m.string)
    n = number(count) if count else len(set(found))
    return [("detectable_format:multiple_sections", {"section_spliter": splitter, "num_sections": n})] if n else []


RULES = compile_rules(
    [
        (r"\b" + BOUNDED + r"[ -]words?\b(?![^.]{0,45}\b(?:capital|caps))(?! or phrases)", _words),
        (r"\b" + RANGE + r" words\b", _words),
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
        (r"\b(?<!first )(?<!the )" + BOUNDED + r" sentences?\b", _sentences),
        (r"\b" + RANGE + r" sentences\b", _sentences),
        (r"\bsentences[^.]{0,40}in the range of " + RANGE, _sentences),
        (
            r"\b(?:in|with|using) (?:only |just )?(?P<n>one|a single) sentence\b|\b(?P<n2>one|single)-sentence\b",
            lambda m: (
                [("length_constraints:number_sentences", {"relation": r, "num_sentences": 1}) for r in ("at least",)]
                + [("length_constraints:number_sentences", {"relation": "less than", "num_sentences": 2})]
            ),
        ),
        (r"\bunder (?P<n>\d+) sentences", _sentences),
        (
            r"\b(?:exactly |in |of |with |into )?(?P<n>\d+|" + NUM[1:-1] + r")[ -](?:paragraphs?|parts|stanzas)\b",
            _paragraphs,
        ),
        (r"\binto (?P<n>\d+|" + NUM[1:-1] + r") parts\b", _paragraphs),
        (r"\bformat\b[^*]{0,120}?(?<!\*)\*\*\*(?!\*)", _divided),
        (
            r"(?:separat\w+|divider|separator)[^.]{0,100}?(?<!\*)\*\*\*(?!\*)|"
            r"(?<!\*)\*\*\*(?!\*) as the section separator|"
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
        (
            r"\b(?:exactly |of |in the format of |include |contain )?(?P<n>\d+|"
            + NUM[1:-1]
            + r") (?:very short |short )?"
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
            fixed("detectable_format:number_highlighted_sections", num_highlights=1),
        ),
        (
            r"\b(?:at least )?(?P<n>\d+|" + NUM[1:-1] + r") placeholders?\b|\bat least (?P<n2>one|a) placeholder\b",
            lambda m: [("detectable_content:number_placeholders", {"num_placeholders": number(m["n"] or "1")})],
        ),
    ]
)

"""Form: punctuation, case, title, postscript, JSON, quotation, start and end, language, repeating the request,
fixed options, two responses."""

from __future__ import annotations

import re

from if_verifiable.ifeval.instructions_util import LANGUAGE_CODES

from reward.instructions.wording import (
    BOUNDED,
    CAPS,
    NUM,
    QUOTE,
    QUOTED,
    RANGE,
    SPAN,
    WHOLE,
    Found,
    Renamed,
    compile_rules,
    counted,
    fixed,
    said_before,
)


def _some_capital_words(m: re.Match) -> Found:
    return [("change_case:capital_word_frequency", {"capital_relation": "at least", "capital_frequency": 1})]


def _all_capitals(m: re.Match) -> Found:
    """The whole answer in capitals; not "words in all caps" (a count: keywords.py) nor "without capital letters"."""
    return [] if said_before(m, r"\bwords?\b|\bwithout|\bno\b|phrases") else [("change_case:english_capital", {})]


def _start_with(m: re.Match) -> Found:
    """The answer starts with a quoted phrase; not a paragraph's first word (counts.py), nor a section marker."""
    if said_before(m, r"paragraph|section") or m[1].endswith(" X"):
        return []
    return [("tao:start_with", {"phrase": m[1]})]


def _end(m: re.Match) -> Found:
    phrase = (m["phrase"] or "").strip()
    return [("startend:end_checker", {"end_phrase": phrase})] if phrase else []


_LANGUAGE_NAMES = {name.lower(): code for code, name in LANGUAGE_CODES.items() if code != "en"}
_LANGUAGE_NAMES["farsi"] = "fa"


def _language(m: re.Match) -> Found:
    return [("language:response_language", {"language": _LANGUAGE_NAMES[m["lang"].lower()]})]


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


def _options(m: re.Match) -> Found:
    tail = m.string[m.end() :]
    quoted = [q.strip() for q in re.findall(QUOTED, tail) if q.strip()]
    if not quoted or any(q.lower().startswith("my answer is") for q in quoted):
        return []
    return [("tao:options", {"options": quoted})]


RULES = compile_rules(
    [
        (
            r"\b(?:no|without|avoid|refrain from)(?: using| the use of|"
            r" any| including)* commas?\b|\bcommas? (?:are|is) not "
            r"allowed\b|(?:\bnot|\bnever|n't)(?: be)?(?: allowed to)? "
            r"(?:use|include|contain|have|put)(?: any)? commas?\b",
            fixed("punctuation:no_comma"),
        ),
        (
            r"\b(?:in|using|use|with|write|written|respond|answer|reply|"
            r"be|only use) (?:all |only |entirely )?lower[- ]?case"
            r"(?! letters? (?:and|or))|\b(?:all|entirely|only|in) "
            r"lower[- ]?case(?:s)?\b|\blower[- ]?case (?:letters )?only"
            r"|\bno capital letters\b|\bnot use any capital letters\b|\bwithout (?:using )?(?:any )?capital letters\b|"
            r"\bno capitali[sz]ations?\b|\bnot a single letter[^.]{0,40}capitali[sz]ed|\bletters lower[- ]?cased\b|"
            r"\bno capital letters (?:are|is) (?:allowed|used)\b|\bhave no capital letters\b",
            fixed("change_case:english_lowercase"),
        ),
        (
            r"(?<!words )(?<!word )(?<!words with )(?<!word with "
            r")(?<!words in )(?<!word in )\b(?:(?:in|using|use|with|write"
            r"|written|respond|answer|reply) (?:all |only |entirely )?"
            + CAPS
            + r"|all "
            + CAPS
            + r"|capital letters only"
            r"|"
            + CAPS
            + r" only)\b(?![^.]{0,60}\b(?:times|words?)\b)|\bcapitali[sz]e (?:all|every) (?:of )?(?:your |the )?"
            r"(?:words|letters)\b|\bno lower[- ]?case letters\b",
            lambda m: (
                [] if said_before(m, r"\bwords?\b|\bwithout|\bno\b|phrases") else [("change_case:english_capital", {})]
            ),
        ),
        (
            r"\b(?:words? (?:with|in) (?:all )?"
            + CAPS
            + r"|all-caps words|capitali[sz]ed words|words? (?:with|in) capital"
            r" letters)"
            + SPAN
            + r"\b(?:(?:for )?"
            + BOUNDED
            + r"(?: times?)?|(?:should be |between )?"
            + RANGE
            + r")\b",
            counted("change_case:capital_word_frequency", "capital_relation", "capital_frequency"),
        ),
        (
            r"\b"
            + BOUNDED
            + r" (?:words|words or phrases) (?:in (?:the output )?)?(?:should be |be )?(?:in|with) (?:all )?"
            + CAPS,
            counted("change_case:capital_word_frequency", "capital_relation", "capital_frequency"),
        ),
        (
            r"\b(?:limit the number of words with all capital letters to|stress words for) " + BOUNDED,
            counted("change_case:capital_word_frequency", "capital_relation", "capital_frequency"),
        ),
        (
            r"\b" + RANGE + r" such capitali[sz]ed words",
            counted("change_case:capital_word_frequency", "capital_relation", "capital_frequency"),
        ),
        (
            r"\b(?:have|use|include) (?P<rel>more than|at least|fewer than|less than) (?P<n>\d+|"
            + NUM[1:-1]
            + r") words be"
            r" in all " + CAPS,
            counted("change_case:capital_word_frequency", "capital_relation", "capital_frequency"),
        ),
        (
            r"\b(?:use|include|add|capitali[sz]e) (?:some|a few) (?:stress )?words\b[^.]{0,30}\b(?:in all "
            + CAPS
            + r"|capitali[sz]ed|to stress)|\badd stress words which are capitali[sz]ed|\buse words (?:with|in) all "
            + CAPS
            + r" to (?:highlight|make|stress)",
            _some_capital_words,
        ),
        (r"<<[^>]*>>|\bdouble angular brackets\b", fixed("detectable_format:title")),
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
            fixed("detectable_format:json_format"),
        ),
        (
            r"\b(?:wrap|put|enclose|place)\w* "
            + WHOLE
            + r"(?: \([^)]{0,80}\))? (?:with|in|inside|within) double quot|"
            + WHOLE
            + r" (?:is |should be |must be |be )?(?:wrapped|enclosed) (?:in|with|within) double quot|"
            r"\bdouble quot\w*(?: marks?)? (?:around|should be placed around) "
            + WHOLE
            + r"|\bdouble quot\w*(?: marks?)? "
            r"around (?:your |the )?(?:entire |whole )?(?:one-sentence "
            r")?(?:response|answer|reply)|\bbe wrapped with double quot",
            fixed("startend:quotation"),
        ),
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
        (r"\blast sentence of " + WHOLE + r" (?:should|must) be:? ?" + QUOTED.replace("(", "(?P<phrase>", 1), _end),
        (
            r"\b(?:start|begin)s? (?:your |the )?\w*? ?with (?:the )?(?:exact )?(?:word|phrase|sentence|letter)? ?"
            + QUOTED,
            lambda m: (
                []
                if said_before(m, r"paragraph|section") or m[1].endswith(" X")
                else [("tao:start_with", {"phrase": m[1]})]
            ),
        ),
        (
            r"\b(?:in|using|use|answer in|respond in|be in|entirely "
            r"in|only in|written in)(?: only| entirely)?(?: the)? "
            r"(?P<lang>"
            + "|".join(_LANGUAGE_NAMES)
            + r")\b(?=[^.]{0,60}(?:no other language|only|language|throughout))|"
            r"\b(?:entire|entirely|whole|only|completely)\b[^.]{0,40}?\b(?:in|use) (?:only )?(?:the )?(?P<lang2>"
            + "|".join(_LANGUAGE_NAMES)
            + r")\b|\b(?P<lang3>"
            + "|".join(_LANGUAGE_NAMES)
            + r") (?:language )?only\b|"
            r"\boutside of (?P<lang4>" + "|".join(_LANGUAGE_NAMES) + r")",
            lambda m: _language(Renamed(m, lang=m["lang"] or m["lang2"] or m["lang3"] or m["lang4"])),
        ),
        (
            r"\b(?:first,? )?repeat (?:the|this|it|my) (?:exact |entire "
            r")?(?:request|sentence|question|prompt|instruction)?"
            r"(?: above| below| itself)?|\brepeat (?=" + QUOTE + r")|\brepeat the request",
            _repeat,
        ),
        (r"\bmy answer is (?:yes|no|maybe)\b", fixed("detectable_format:constrained_response")),
        (r"\bone of the following (?:options|phrases|answers)\b(?![^.\n]{0,40}my answer is)", lambda m: _options(m)),
        (
            r"\btwo different responses\b|\bseparated? (?:them |the two "
            r"\w+ |each \w+ |your two \w+ |those two \w+ )?(?:by|with|"
            r"using) (?:exactly )?(?:6|six) asterisks?\b|\b(?:two|2) \w+[^.]{0,60}?(?:separated by|with) \*{6}|"
            r"\bseparated? [^.]{0,60}(?:6|six) asterisk|\bfollowing 6 asterisk|\*{6}",
            fixed("combination:two_responses"),
        ),
    ]
)

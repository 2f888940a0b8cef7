"""The scoring contract, and several scorers combined with weights.

A scorer spec is ``SPEC[=WEIGHT]``:

    rule:NAME[:ARG]          a built-in rule (reward/rules.py)
    rm:DIR                   a reward model directory (sequence classification, one output)
    judge:RUBRIC[@MODEL]     an LLM judge rating each answer against a rubric file (reward/judge.py)
    judge_group:RUBRIC[@MODEL]  the judge scoring a prompt's candidates together, relative to each other
    ifeval[:instructions]    IFEval's checker on items carrying IFEval's labels: the yardstick (reward/ifeval.py)
    module:function          a Python function with trl's reward signature (reward/function.py)
    path/to/file.py:function the same, loaded from a file

The combined score is the weighted sum of the scores that have an opinion (as trl sums reward functions,
ignoring None); a candidate no scorer has an opinion on gets None. Non-finite numbers count as None.

Gated (``reward.gate``), the first scorer is the main one and the others count only for a candidate it scores
above 0 or has no opinion on: the small parts of a reward (ending, repetition, a length floor) then rank answers
that do what the main scorer asks, and never split a group in which no candidate does (such a group scores 0
throughout and the update skips it as having no signal).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from reward import ifeval
from reward.function import FunctionScorer, load_function
from reward.instructions import repair
from reward.judge import JudgeScorer
from reward.rules import MajorityScorer, RuleScorer, rule_check
from tao.core.config import Config, JudgeConfig
from tao.core.errors import InputError
from tao.core.specs import REPAIRING_SCORERS, split_weight
from tao.core.types import Candidate, Prompt, Score, Scored

_THINK_END = re.compile(r"</think(?:ing)?>")
_THINK_START = re.compile(r"\s*<think(?:ing)?>")
GROUPS_AT_ONCE = 8  # prompts whose candidates are scored in one call (a judge may compare a group's candidates)


class Scorer(Protocol):
    name: str  # the spec, without weight

    def score(self, prompts: Sequence[Prompt], candidates: Sequence[Candidate]) -> list[float | None]:
        """One score per candidate (``prompts[i]`` is the prompt of ``candidates[i]``); None = no opinion."""
        ...


def build_scorer(
    spec: str, trust_remote_code: bool = False, base_model: str = "default", judge: JudgeConfig | None = None
) -> Scorer:
    """The scorer a spec names; a judge without ``@JUDGE`` is ``base_model`` (the run's base), ``@endpoint`` the
    endpoint of ``judge`` (the config's judge section)."""
    kind, _, rest = spec.partition(":")
    if kind in ("judge", "judge_group") and rest:
        return JudgeScorer(spec, kind == "judge_group", base_model, trust_remote_code, judge)
    if kind == "ifeval":
        return ifeval.build(spec)
    if spec == "rule:majority_number":
        return MajorityScorer()
    if kind == "rule":
        name, has_arg, arg = rest.partition(":")
        return RuleScorer(spec, rule_check(name, arg if has_arg else None, spec))
    if kind == "rm":
        from reward.reward_model import RewardModelScorer

        return RewardModelScorer(spec, Path(rest), trust_remote_code)
    if rest:
        return FunctionScorer(spec, load_function(spec, spec))
    raise InputError(
        "expected rule:NAME, rm:DIR, judge:RUBRIC, judge_group:RUBRIC, ifeval[:instructions] or module:function",
        field=spec,
    )


def answer_part(text: str) -> str:
    """What a reasoning model answered after its thinking: the text after the first ``</think>`` (or
    ``</thinking>``), stripped, as IFEval's checker reads it; an unfinished thinking block leaves no answer."""
    thinking, answer = _split_thinking(text)
    return answer.rstrip() if thinking else answer


def _split_thinking(text: str) -> tuple[str, str]:
    """(the thinking block with the space after it, the answer): ``("", text)`` without a block, ``(text, "")``
    while it is unfinished."""
    closed = _THINK_END.search(text)
    if closed:
        answer = text[closed.end() :].lstrip()
        return text[: len(text) - len(answer)], answer
    return (text, "") if _THINK_START.match(text) else ("", text)


class RewardSet:
    """Several scorers with weights, scoring candidates into :class:`Score`\\ s. With ``thinking="strip"`` (the
    default) the scorers see only the answer after a thinking block (:func:`answer_part`); ``"score"`` gives them
    the whole text."""

    def __init__(
        self,
        specs: Sequence[str],
        trust_remote_code: bool = False,
        base_model: str = "default",
        gate: bool = False,
        thinking: str = "strip",
        judge: JudgeConfig | None = None,
    ):
        if not specs:
            raise InputError("at least one scorer is needed", field="reward")
        self.weighted: list[tuple[Scorer, float]] = []
        for text in specs:
            spec, weight = split_weight(text)
            self.weighted.append((build_scorer(spec, trust_remote_code, base_model, judge), weight))
        names = [s.name for s, _ in self.weighted]
        if len(set(names)) != len(names):
            raise InputError("a scorer is listed twice; give it one weight", field="reward")
        self.gate = gate  # (a gate over one scorer is refused with the settings: tao/core/config.py)
        self.thinking = thinking

    @classmethod
    def from_config(cls, specs: Sequence[str], config: Config, gate: bool = False) -> RewardSet:
        """The scorers ``specs`` as a run's config sets them up (remote code, judge model, thinking blocks)."""
        model = config.model
        return cls(specs, model.trust_remote_code, model.name, gate, config.reward.thinking, config.judge)

    @property
    def specs(self) -> list[str]:
        return [f"{s.name}={w:g}" for s, w in self.weighted]

    @property
    def identity(self) -> str:
        """What the totals depend on (scorers, weights, gate, thinking): totals with equal identities are comparable."""
        return (
            "|".join(self.specs) + ("|gated" if self.gate else "") + ("|thinking" if self.thinking == "score" else "")
        )

    def score(self, prompts: Sequence[Prompt], candidates: Sequence[Candidate]) -> list[Score]:
        if self.thinking == "strip":
            candidates = [replace(c, text=answer_part(c.text)) for c in candidates]
        columns = {}
        for scorer, _ in self.weighted:
            values = scorer.score(prompts, candidates)
            columns[scorer.name] = [v if v is not None and math.isfinite(v) else None for v in values]
        scores = []
        for i in range(len(candidates)):
            parts = {name: column[i] for name, column in columns.items()}
            counted = self.weighted
            main = parts[self.weighted[0][0].name]
            if self.gate and main is not None and main <= 0:
                counted = self.weighted[:1]  # the parts are kept for the record; the total is the main score's
            present = [(parts[s.name], w) for s, w in counted if parts[s.name] is not None]
            total = sum(v * w for v, w in present) if present else None
            scores.append(Score(total, parts))
        return scores

    def score_groups(
        self, prompts: Sequence[Prompt], candidates: Sequence[Candidate], progress: Callable[[int], None] | None = None
    ) -> list[Scored]:
        """Every candidate of ``prompts`` (in prompt order), scored whole groups at a time: a scorer may compare a
        group's candidates. ``progress`` is told how many prompts each chunk held."""
        groups: dict[str, list[Candidate]] = {p.id: [] for p in prompts}
        for c in candidates:
            groups[c.prompt_id].append(c)
        out: list[Scored] = []
        for start in range(0, len(prompts), GROUPS_AT_ONCE):
            chunk = prompts[start : start + GROUPS_AT_ONCE]
            members = [c for p in chunk for c in groups[p.id]]
            scores = self.score([p for p in chunk for _ in groups[p.id]], members)
            out += [Scored(c, s) for c, s in zip(members, scores, strict=True)]
            if progress:
                progress(len(chunk))
        return out

    def unparsed(self) -> dict[str, int]:
        """Per judge, the candidates whose verdict it could not read (scored None)."""
        return {s.name: s.unparsed for s, _ in self.weighted if isinstance(s, JudgeScorer) and s.unparsed}

    def judge_usage(self) -> dict[str, dict[str, int]]:
        """Per judge at an endpoint, what it has been asked so far: requests, failures, retries, tokens."""
        return {
            s.name: s.endpoint.usage.as_dict() for s, _ in self.weighted if isinstance(s, JudgeScorer) and s.endpoint
        }

    def repair(self, prompt: Prompt, text: str) -> str:
        """``text`` with the mechanical fixes of the prompt's instructions (reward/instructions/repair.py) where an
        instruction rule scores; else unchanged. What the ``repair`` exploration strategy offers. With thinking
        stripped, only the answer after the thinking block is fixed, as only it is scored."""
        if not any(s.name in REPAIRING_SCORERS for s, _ in self.weighted):
            return text
        thinking, answer = _split_thinking(text) if self.thinking == "strip" else ("", text)
        if thinking and not answer:  # no answer after the thinking yet: nothing to fix
            return text
        return thinking + repair.repair(prompt, answer)

    def totals(self, prompts: Sequence[Prompt], candidates: Sequence[Candidate]) -> list[float | None]:
        """The weighted totals alone (what best-of-N exploration ranks by)."""
        return [s.total for s in self.score(prompts, candidates)]

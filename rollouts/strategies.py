"""Exploration strategies: more compute at tuning time, to find better answers than plain sampling.

``rollout.strategies`` lists them as ``SPEC[=SHARE]``; each gets its share of a prompt's
``rollout.num_candidates`` candidates (largest remainder, at least one each):

- ``sample``: plain sampling at ``rollout.temperature``.
- ``ladder[:LOW-HIGH]``: one candidate per temperature on a ladder from LOW to HIGH (default 0.4-1.2).
- ``think``: a system instruction to work out the request's requirements first and then give the answer after a
  ``Final answer:`` line; the candidate is what follows that line (the whole text when the model omits it).
- ``guide:FILE``: system-prompt variants the user supplies (a style or policy guide), separated by ``---`` lines;
  candidates take them in turn.
- ``refine[:ROUNDS]``: the model reviews its own sampled draft against the request and rewrites it, ROUNDS times
  (default 1); the candidate is the last revision.
- ``best_of[:M]``: M times as many plain samples, scored; the top ones by score are kept (default M = 4).
- ``exemplars[:K]``: the K earlier prompts most like this one, each with the run's best-scored answer to it, shown
  as earlier turns of the conversation (default 2; rollouts/exemplars.py); plain sampling until a round has finished.
- ``repair``: the model's own sampled answer with the mechanical fixes the reward's instruction checks know (all
  lowercase, all capitals, quotation marks around it, no commas, the request repeated first, a closing phrase:
  reward/instructions/repair.py), for instructions a small model almost never follows by sampling; a draft with
  nothing to fix stays a plain sample. Needs ``rule:instructions`` (or ``rule:all_instructions``) among the scorers.
- ``greedy``: the model's own greedy answer (temperature 0), always exactly one candidate (it takes no share): the
  answer a greedy deployment gives, so the update can keep it where it scores well and correct it where it does not.

Whatever context a strategy used, its candidate is trained as the answer to the **plain prompt** (the update
replays the plain prompt's tokens with the candidate's), so the tuned model costs the same to run as the base.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from rollouts.engine import Engine
from rollouts.exemplars import SHOWN, Exemplar, nearest
from tao.core.errors import InputError
from tao.core.specs import Strategy, parse_strategy
from tao.core.types import Ask, Candidate, Message, Prompt, Sampling

THINK = (
    "Before you answer, think step by step: list every requirement the request states (format, length, words to use "
    "or avoid, case, punctuation). Then write a line 'Final answer:' followed by your answer alone, meeting them all."
)
FINAL = re.compile(r"final answer\s*:\s*", re.IGNORECASE)
REFINE = (
    "Check your answer against every requirement of my request (format, length, words, case, punctuation) and "
    "rewrite it so that it meets them all. Reply with the improved answer only."
)
EXEMPLAR_ROOM = 512  # tokens of exemplar turns at most before a prompt (rollouts/vllm_engine.py leaves the room)
MARKUP = 8  # tokens of chat markup counted per shown turn
Scorer = Callable[[Sequence[Prompt], Sequence[Candidate]], list[float | None]]
Repairer = Callable[[Prompt, str], str]  # an answer to a prompt -> the answer with its fixes (the reward's)


def load_strategies(specs: Sequence[str], num_candidates: int) -> list[Strategy]:
    """The strategies of ``rollout.strategies``, guide files read; errors name the field and file."""
    try:
        strategies = [parse_strategy(s) for s in specs]
    except ValueError as exc:
        raise InputError(str(exc), field="rollout.strategies") from None
    if len(strategies) > num_candidates:
        raise InputError(f"{len(strategies)} strategies for {num_candidates} candidates", field="rollout.strategies")
    greedy = sum(s.kind == "greedy" for s in strategies)
    if greedy > 1 or greedy == len(strategies) < num_candidates:
        raise InputError(
            "greedy is one candidate, listed once, beside a strategy that fills the others", field="rollout.strategies"
        )
    out = []
    for s in strategies:
        if s.kind == "guide":
            path = Path(s.arg).expanduser()
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"cannot read the guide file ({exc})", file=path, field="rollout.strategies") from None
            guides = tuple(g.strip() for g in re.split(r"^---\s*$", text, flags=re.MULTILINE) if g.strip())
            if not guides:
                raise InputError("the guide file is empty", file=path, field="rollout.strategies")
            s = replace(s, guides=guides)
        out.append(s)
    return out


def allocate(strategies: Sequence[Strategy], n: int) -> list[int]:
    """Candidates per strategy: one for ``greedy``; for the others proportional to the shares, at least one
    each; summing to ``n``."""
    shared = [i for i, s in enumerate(strategies) if s.kind != "greedy"]
    total = sum(strategies[i].share for i in shared)
    spare = n - len(strategies)  # one each first, the rest by largest remainder
    exact = {i: strategies[i].share / total * spare for i in shared}
    counts = [1 + math.floor(exact.get(i, 0.0)) for i in range(len(strategies))]
    by_remainder = sorted(shared, key=lambda i: (-(exact[i] - math.floor(exact[i])), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return counts


def with_system(prompt: Prompt, text: str, suffix: str) -> Prompt:
    """``prompt`` with ``text`` added to its system message (or a new one), under a derived id."""
    messages = list(prompt.messages)
    if messages and messages[0].role == "system":
        messages[0] = Message("system", f"{messages[0].content}\n\n{text}")
    else:
        messages.insert(0, Message("system", text))
    return replace(prompt, id=f"{prompt.id}#{suffix}", messages=tuple(messages))


@dataclass(frozen=True)
class Plan:
    """A strategy's requests to the engine, and what it makes of their answers: its candidates (with their
    context) and the tokens it generated (drafts and pools included)."""

    asks: tuple[Ask, ...]
    finish: Callable[[list[list[Candidate]]], tuple[list[Candidate], int]]


def explore(
    engine: Engine,
    prompts: Sequence[Prompt],
    strategies: Sequence[Strategy],
    sampling: Sampling,
    adapter: Path | None,
    score: Scorer,
    examples: Sequence[Exemplar] = (),
    repair: Repairer | None = None,
) -> tuple[list[Candidate], dict[str, dict]]:
    """``sampling.n`` candidates per prompt, shared among ``strategies``; returns them (grouped by prompt,
    re-indexed 0..n-1, each tagged with its strategy and context) and, per strategy, candidates and tokens spent.
    Every strategy's first requests go to the engine together, so its batch stays full across them.
    ``examples``: the earlier rounds' exemplars the ``exemplars`` strategy chooses from; ``repair``: the fixes the
    ``repair`` strategy applies."""
    plans = []
    for i, (strategy, k) in enumerate(zip(strategies, allocate(strategies, sampling.n), strict=True)):
        own = replace(sampling, n=k, seed=sampling.seed + 7919 * i)  # the first strategy keeps the run's seed
        plans.append(_plan(strategy, engine, prompts, own, adapter, score, examples, repair))
    answered = iter(engine.generate_many([ask for plan in plans for ask in plan.asks], adapter))
    found: dict[str, list[Candidate]] = {p.id: [] for p in prompts}
    stats = {}
    for strategy, plan in zip(strategies, plans, strict=True):
        candidates, tokens = plan.finish([next(answered) for _ in plan.asks])
        for c in candidates:
            found[c.prompt_id].append(replace(c, strategy=strategy.name))
        stats[strategy.name] = {"candidates": len(candidates), "tokens": tokens}
        if strategy.kind == "exemplars":
            stats[strategy.name]["exemplars_available"] = len(examples)
        if strategy.guides:  # the file may change later: record what this exploration used
            stats[strategy.name]["guides_sha256"] = hashlib.sha256("\n---\n".join(strategy.guides).encode()).hexdigest()
    out = [replace(c, index=j) for p in prompts for j, c in enumerate(found[p.id])]
    return out, stats


def _plan(
    strategy: Strategy,
    engine: Engine,
    prompts: Sequence[Prompt],
    s: Sampling,
    adapter: Path | None,
    score: Scorer,
    examples: Sequence[Exemplar],
    repair: Repairer | None,
) -> Plan:
    """One strategy's ``s.n`` candidates per prompt."""
    plain = tuple(prompts)
    if strategy.kind == "greedy":
        return Plan((Ask(plain, replace(s, temperature=0.0)),), lambda out: _tagged(out[0], "T=0"))
    if strategy.kind == "sample":
        return Plan((Ask(plain, s),), lambda out: _tagged(out[0], f"T={s.temperature:g}"))
    if strategy.kind == "ladder":
        return _ladder(strategy.arg or "0.4-1.2", plain, s)
    if strategy.kind == "think":
        asked = tuple(with_system(p, THINK, "think") for p in plain)
        return Plan((Ask(asked, s),), lambda out: _thought(engine, _as_plain(out[0], asked, plain)))
    if strategy.kind == "guide":
        return _guided(strategy, plain, s)
    if strategy.kind == "refine":
        rounds = int(strategy.arg or 1)
        return Plan((Ask(plain, s),), lambda out: _refined(rounds, engine, plain, s, adapter, out[0]))
    if strategy.kind == "repair":
        if repair is None:
            raise ValueError("the repair strategy needs the reward's fixes (explore's repair argument)")
        return Plan((Ask(plain, s),), lambda out: _repaired(engine, plain, s, repair, out[0]))
    if strategy.kind == "exemplars":
        return _shown(int(strategy.arg or 2), engine, plain, s, examples)
    m = int(strategy.arg or 4)
    return Plan((Ask(plain, replace(s, n=s.n * m)),), lambda out: _best_of(m, plain, s, score, out[0]))


def _tokens(candidates: Sequence[Candidate]) -> int:
    return sum(len(c.token_ids) for c in candidates)


def _tagged(candidates: list[Candidate], context: str) -> tuple[list[Candidate], int]:
    return [replace(c, context=context) for c in candidates], _tokens(candidates)


def _as_plain(candidates: list[Candidate], asked: Sequence[Prompt], plain: Sequence[Prompt]) -> list[Candidate]:
    """Candidates for the ``asked`` prompts (with context), tagged with the ``plain`` prompts' ids."""
    ids = {a.id: p.id for a, p in zip(asked, plain, strict=True)}
    return [replace(c, prompt_id=ids[c.prompt_id], logprobs=None) for c in candidates]


def _ladder(arg: str, prompts: tuple[Prompt, ...], s: Sampling) -> Plan:
    low, high = (float(x) for x in arg.split("-"))
    temperatures = [(low + high) / 2 if s.n == 1 else low + (high - low) * j / (s.n - 1) for j in range(s.n)]
    asks = tuple(Ask(prompts, replace(s, n=1, temperature=t, seed=s.seed + j)) for j, t in enumerate(temperatures))

    def finish(out: list[list[Candidate]]) -> tuple[list[Candidate], int]:
        found = [
            replace(c, context=f"T={t:.2f}", logprobs=None)
            for t, step in zip(temperatures, out, strict=True)
            for c in step
        ]
        return found, _tokens(found)

    return Plan(asks, finish)


def _thought(engine: Engine, candidates: list[Candidate]) -> tuple[list[Candidate], int]:
    return [_final_answer(engine, c) for c in candidates], _tokens(candidates)


def _final_answer(engine: Engine, c: Candidate) -> Candidate:
    """The text after the last ``Final answer:`` line, re-tokenized; the reasoning is not trained on."""
    parts = FINAL.split(c.text)
    if len(parts) < 2:
        return replace(c, context="think: no 'Final answer:' line, whole text kept")
    answer = parts[-1].strip()
    ids = engine.tokenizer.encode(answer, add_special_tokens=False)
    ids = [*ids, c.token_ids[-1]] if c.finished else ids
    return replace(
        c,
        text=answer,
        token_ids=tuple(ids),
        context=f"think: {len(c.token_ids) - len(ids)} tokens of reasoning dropped",
    )


def _repaired(
    engine: Engine, prompts: Sequence[Prompt], s: Sampling, repair: Repairer, drafts: list[Candidate]
) -> tuple[list[Candidate], int]:
    """Sampled drafts, each with the fixes ``repair`` makes, re-tokenized (its end token kept when it finished);
    a fix that runs past ``s.max_new_tokens`` is cut there, unfinished, as the engine would have cut it."""
    by_id = {p.id: p for p in prompts}
    out = []
    for c in drafts:
        text = repair(by_id[c.prompt_id], c.text)
        if text == c.text:
            out.append(replace(c, context="nothing to repair: a plain sample"))
            continue
        ids = engine.tokenizer.encode(text, add_special_tokens=False)
        finished = c.finished and len(ids) < s.max_new_tokens
        if finished:
            ids.append(c.token_ids[-1])
        elif len(ids) > s.max_new_tokens:
            ids = ids[: s.max_new_tokens]
            text = engine.tokenizer.decode(ids)
        context = f"repaired: {c.text[:120]}"
        out.append(replace(c, text=text, token_ids=tuple(ids), finished=finished, logprobs=None, context=context))
    return out, _tokens(drafts)


def _guided(strategy: Strategy, prompts: tuple[Prompt, ...], s: Sampling) -> Plan:
    """Candidates take the variants in turn. Variants with as many candidates each are asked together: one batch
    of all their prompts decodes faster than a small batch per variant."""
    counts = [len(range(v, s.n, len(strategy.guides))) for v in range(len(strategy.guides))]
    groups = [
        (count, [v for v, c in enumerate(counts) if c == count]) for count in sorted(set(counts) - {0}, reverse=True)
    ]
    asked = [
        tuple(with_system(p, strategy.guides[v], f"guide{v + 1}") for v in variants for p in prompts)
        for _, variants in groups
    ]
    asks = tuple(
        Ask(a, replace(s, n=count, seed=s.seed + variants[0]))
        for a, (count, variants) in zip(asked, groups, strict=True)
    )

    def finish(out: list[list[Candidate]]) -> tuple[list[Candidate], int]:
        found = []
        for a, (count, variants), step in zip(asked, groups, out, strict=True):
            plain = [p for _ in variants for p in prompts]
            for j, c in enumerate(_as_plain(step, a, plain)):  # each variant's prompts, count candidates each
                v = variants[j // (len(prompts) * count)]
                found.append(replace(c, context=f"guide {v + 1}: {strategy.guides[v][:80]}"))
        return found, _tokens(found)

    return Plan(asks, finish)


def _refined(
    rounds: int,
    engine: Engine,
    prompts: Sequence[Prompt],
    s: Sampling,
    adapter: Path | None,
    drafts: list[Candidate],
) -> tuple[list[Candidate], int]:
    """Each draft reviewed and rewritten ``rounds`` times, one engine call a round (each needs the last)."""
    spent, first = _tokens(drafts), [c.text for c in drafts]
    by_id = {p.id: p for p in prompts}
    for r in range(rounds):
        asked = [
            replace(
                by_id[c.prompt_id],
                id=f"{c.prompt_id}#refine{j}",
                messages=(*by_id[c.prompt_id].messages, Message("assistant", c.text), Message("user", REFINE)),
            )
            for j, c in enumerate(drafts)
        ]
        plain = [by_id[c.prompt_id] for c in drafts]
        drafts = _as_plain(engine.generate(asked, replace(s, n=1, seed=s.seed + 101 + r), adapter), asked, plain)
        spent += _tokens(drafts)
    return [
        replace(c, context=f"revision {rounds} of the draft: {d[:120]}") for c, d in zip(drafts, first, strict=True)
    ], spent


def _shown(k: int, engine: Engine, prompts: tuple[Prompt, ...], s: Sampling, examples: Sequence[Exemplar]) -> Plan:
    """Each prompt after its ``k`` nearest exemplars that fit in ``EXEMPLAR_ROOM``, as earlier user/assistant
    turns (after any system turn), the most similar last."""
    if not examples:
        return Plan((Ask(prompts, s),), lambda out: _tagged(out[0], "no exemplar yet: a plain sample"))
    asked, shown_ids = [], {}
    for p, ranked in zip(prompts, nearest(prompts, examples, len(examples)), strict=True):
        shown, room = [], EXEMPLAR_ROOM
        for e in reversed(ranked):  # the most similar first; one that does not fit is passed over
            if len(shown) == k:
                break
            turns = (e.prompt.messages[-1], Message("assistant", e.answer))
            cost = sum(len(engine.tokenizer.encode(m.content, add_special_tokens=False)) + MARKUP for m in turns)
            if cost <= room:
                shown.insert(0, e)
                room -= cost
        turns = [m for e in shown for m in (e.prompt.messages[-1], Message("assistant", e.answer))]
        lead = 1 if p.messages[0].role == "system" else 0
        asked.append(replace(p, id=f"{p.id}#exemplars", messages=(*p.messages[:lead], *turns, *p.messages[lead:])))
        shown_ids[p.id] = ", ".join(e.prompt.id for e in shown)
    context = {i: f"{SHOWN}{ids}" if ids else "no exemplar fits: a plain sample" for i, ids in shown_ids.items()}

    def finish(out: list[list[Candidate]]) -> tuple[list[Candidate], int]:
        found = _as_plain(out[0], asked, prompts)
        return [replace(c, context=context[c.prompt_id]) for c in found], _tokens(found)

    return Plan((Ask(tuple(asked), s),), finish)


def _best_of(
    m: int, prompts: Sequence[Prompt], s: Sampling, score: Scorer, pool: list[Candidate]
) -> tuple[list[Candidate], int]:
    """The top ``s.n`` of each prompt's ``s.n * m`` pooled samples by score."""
    by_id = {p.id: p for p in prompts}
    scores = score([by_id[c.prompt_id] for c in pool], pool)
    ranked: dict[str, list[tuple[float, int, Candidate]]] = {p.id: [] for p in prompts}
    for j, (c, value) in enumerate(zip(pool, scores, strict=True)):
        ranked[c.prompt_id].append((-math.inf if value is None else value, j, c))
    out = []
    for p in prompts:
        top = sorted(ranked[p.id], key=lambda t: (-t[0], t[1]))[: s.n]
        out += [replace(c, context=f"top {s.n} of {s.n * m} by score ({v:.3f})") for v, _, c in top]
    return out, _tokens(pool)

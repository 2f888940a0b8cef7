"""Exemplars: the run's own best earlier answers, shown to the model before a similar prompt.

A small model rarely samples an answer that meets an unusual request, and telling it the requirements again
changes little (docs/RESULTS.md, the checklist probe); shown a well-scored answer to a similar request as an
earlier turn of the conversation, it imitates its form. The ``exemplars`` strategy (rollouts/strategies.py)
puts the ``k`` most similar earlier prompts, each with its best-scored answer, as earlier chat turns before the
prompt; its candidates are trained as answers to the plain prompt, like every strategy's.

The exemplars come from the rounds already finished (the loop reads them from the run: tao/run/plan.py
``scored_rounds``), so the first round has none (the strategy then samples
plainly), and a resumed round finds the same ones. Similarity is tf-idf cosine over the prompts' words: nothing
to download, and prompts that share a request's wording (a template, an instruction) rank first.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from tao.core.types import Prompt, Scored

TOP_SHARE = 0.1  # an exemplar scored in the top tenth of the earlier rounds' candidates
SHOWN = "after exemplars "  # a candidate's context when it was shown exemplars, followed by their prompt ids


@dataclass(frozen=True)
class Exemplar:
    """An earlier prompt and its best-scored finished answer."""

    prompt: Prompt
    answer: str
    score: float


def gather(rounds: Iterable[tuple[Sequence[Prompt], Sequence[Scored]]]) -> list[Exemplar]:
    """From earlier rounds' (prompts, scored candidates): each prompt's best finished answer, when its score is in
    the top tenth of all those rounds' scored candidates (ties with the cut included). A prompt explored in several
    rounds keeps its best answer of all."""
    best: dict[str, Exemplar] = {}
    scores: list[float] = []
    for prompts, scored in rounds:
        by_id = {p.id: p for p in prompts}
        for s in scored:
            total, c = s.score.total, s.candidate
            if total is None:
                continue
            scores.append(total)
            if not c.finished or c.prompt_id not in by_id:
                continue
            old = best.get(c.prompt_id)
            if old is None or total > old.score:
                best[c.prompt_id] = Exemplar(by_id[c.prompt_id], c.text, total)
    if not scores:
        return []
    cut = float(np.quantile(scores, 1 - TOP_SHARE, method="lower"))
    return [e for e in best.values() if e.score >= cut and e.answer.strip()]


def _words(prompt: Prompt) -> Counter[str]:
    return Counter(re.findall(r"\w+", " ".join(m.content for m in prompt.messages if m.role == "user").lower()))


def nearest(prompts: Sequence[Prompt], exemplars: Sequence[Exemplar], k: int) -> list[list[Exemplar]]:
    """For each prompt, the ``k`` exemplars of other prompts most similar to it (tf-idf cosine over the words of
    the user turns), the most similar last; ties keep the earlier exemplar."""
    docs = [_words(e.prompt) for e in exemplars]
    queries = [_words(p) for p in prompts]
    df = Counter(w for d in (*docs, *queries) for w in d)
    n = len(docs) + len(queries)

    def vector(counts: Counter[str]) -> dict[str, float]:
        v = {w: c * math.log(n / df[w]) for w, c in counts.items()}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        return {w: x / norm for w, x in v.items()}

    vectors = [vector(d) for d in docs]
    out = []
    for prompt, query in zip(prompts, queries, strict=True):
        q = vector(query)
        ranked = sorted(
            (i for i, e in enumerate(exemplars) if e.prompt.id != prompt.id),
            key=lambda i: (-sum(x * vectors[i].get(w, 0.0) for w, x in q.items()), i),
        )
        out.append([exemplars[i] for i in ranked[:k]][::-1])
    return out

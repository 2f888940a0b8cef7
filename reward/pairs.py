"""Preference pairs: reading them (``tao reward train/eval``) and making them from scored candidates (``label``).

A pairs file has one JSON object per line, in trl's preference forms:

- ``{"prompt": "...", "chosen": "...", "rejected": "..."}`` (the prompt may also be a list of chat messages);
- ``{"chosen": [messages...], "rejected": [messages...]}``: conversations that share their prompt turns and end
  with the assistant's answer (trl's implicit-prompt form).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reward.scorer import RewardSet
from tao.core.errors import InputError
from tao.core.prompts import parse_record
from tao.core.records import records
from tao.core.types import Candidate, Prompt


@dataclass(frozen=True)
class Pair:
    prompt: Prompt
    chosen: str
    rejected: str


def load_pairs(path: Path) -> tuple[str, list[Pair]]:
    """The file's sha256 and its pairs; a bad line is an InputError naming file, line and field."""
    digest = hashlib.sha256()
    pairs = []
    for number, obj in records(path, digest):
        pairs.append(_pair(obj, path, number))
    if not pairs:
        raise InputError("no pairs in file", file=path)
    return digest.hexdigest(), pairs


def _pair(obj: Any, path: Path, number: int) -> Pair:
    def bad(problem: str, field: str | None = None) -> InputError:
        return InputError(problem, file=path, line=number, field=field)

    if not isinstance(obj, dict):
        raise bad(f"expected a JSON object, got {type(obj).__name__}")
    answers = {}
    turns = None
    for key in ("chosen", "rejected"):
        if key not in obj:
            raise bad(f'missing "{key}"', key)
        value = obj[key]
        if isinstance(value, list):  # a conversation ending with the assistant's answer
            if not value or not isinstance(value[-1], dict) or value[-1].get("role") != "assistant":
                raise bad("a conversation must end with the assistant's answer", f"{key}[-1]")
            turns = turns if turns is not None else value[:-1]
            value = value[-1].get("content")
        if not isinstance(value, str) or not value.strip():
            raise bad("expected a non-empty answer", key)
        answers[key] = value
    if answers["chosen"].strip() == answers["rejected"].strip():
        raise bad("chosen and rejected are the same answer", "rejected")
    if "prompt" in obj:
        line = {"prompt": obj["prompt"]} if isinstance(obj["prompt"], str) else {"messages": obj["prompt"]}
    elif turns:
        line = {"messages": turns}
    else:
        raise bad('missing "prompt" (or conversations in "chosen" and "rejected")', "prompt")
    prompt = parse_record({**line, "id": obj.get("prompt_id", obj.get("id"))}, path, number)
    return Pair(prompt, answers["chosen"], answers["rejected"])


def label(
    prompts: dict[str, Prompt], rows: Sequence[dict], scorer: RewardSet, margin: float, per_prompt: int
) -> tuple[list[dict], dict]:
    """Preference pairs from candidates: per prompt, the pairs whose scores differ by at least ``margin``,
    widest first, at most ``per_prompt`` of them, each answer text at most once per side."""
    groups: defaultdict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row["prompt_id"] not in prompts:
            raise InputError(f"candidate of unknown prompt {row['prompt_id']!r}", field="prompt_id")
        groups[row["prompt_id"]].append(row)
    out, unscored = [], 0
    for pid, group in groups.items():
        cands = [
            Candidate(pid, i, r["text"], tuple(r.get("token_ids", ())), r.get("finished", True), "")
            for i, r in enumerate(group)
        ]
        scores = scorer.totals([prompts[pid]] * len(cands), cands)
        unscored += sum(s is None for s in scores)
        ranked = sorted((s, c.text) for s, c in zip(scores, cands, strict=True) if s is not None)  # worst first
        options = [
            (hi - lo, good, bad)
            for i, (lo, bad) in enumerate(ranked)
            for hi, good in ranked[i + 1 :]
            if hi - lo >= margin and good.strip() != bad.strip()
        ]
        used: set[tuple[str, str]] = set()
        for gap, good, bad in sorted(options, key=lambda o: -o[0]):
            if len(used) == per_prompt or any(good == u[0] or bad == u[1] for u in used):
                continue
            used.add((good, bad))
            out.append(
                {"prompt_id": pid, "prompt": prompts[pid].chat(), "chosen": good, "rejected": bad, "margin": gap}
            )
    stats = {"prompts": len(groups), "candidates": len(rows), "unscored": unscored, "pairs": len(out)}
    stats["prompts_with_a_pair"] = len({r["prompt_id"] for r in out})
    return out, stats

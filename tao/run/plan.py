"""What a round will do, fixed before it starts: its prompts, its parent, its seed.

A round exists once its ``plan.json`` is written (after its ``config.yaml``); a round directory without a
plan is a planning step that was interrupted, and is planned again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tao.core.config import Config
from tao.core.config_file import to_yaml
from tao.core.errors import InputError
from tao.core.storage import read_json, read_jsonl, write_json, write_text
from tao.core.types import Prompt, Scored
from tao.run import pool
from tao.run.paths import RoundPaths, RunPaths


@dataclass(frozen=True)
class Plan:
    round: int
    parent_round: int | None  # the round whose adapter this one starts from; None = the base model
    seed: int
    prompts_file: str
    prompts_sha256: str
    prompts_in_file: int  # unique prompts in the file
    duplicates_dropped: int
    too_long_skipped: int  # training prompts passed over by this round's choice: too long for the model
    held_out: int  # prompts held out in the run so far
    prompts: tuple[Prompt, ...]  # explored and trained on
    eval_prompts: tuple[Prompt, ...]  # answered greedily and scored, before and after

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["prompts"] = [p.to_row() for p in self.prompts]
        data["eval_prompts"] = [p.to_row() for p in self.eval_prompts]
        return data

    @classmethod
    def read(cls, rp: RoundPaths) -> Plan:
        data = read_json(rp.plan)
        try:
            data["prompts"] = tuple(Prompt.from_row(r) for r in data["prompts"])
            data["eval_prompts"] = tuple(Prompt.from_row(r) for r in data["eval_prompts"])
            return cls(**data)
        except (KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"not a round plan tao wrote ({type(exc).__name__}: {exc})", file=rp.plan) from None


def planned_rounds(paths: RunPaths) -> list[RoundPaths]:
    return [r for r in paths.rounds() if r.plan.is_file()]


def pending_round(paths: RunPaths) -> RoundPaths | None:
    """The planned round that has not finished, if any (there is at most one)."""
    pending = [r for r in planned_rounds(paths) if not r.manifest.is_file()]
    return pending[0] if pending else None


def finished_on_file(paths: RunPaths, sha256: str) -> int:
    """Finished rounds that ran on this version of the prompts file."""
    return sum(Plan.read(r).prompts_sha256 == sha256 for r in planned_rounds(paths) if r.manifest.is_file())


def read_split(paths: RunPaths) -> tuple[list[str], list[str]] | None:
    """The (seen, held-out) ids of a run made before the pool existed (its split.json), to carry them over."""
    if not paths.split.is_file():
        return None
    state = read_json(paths.split)
    try:
        seen, held = [str(i) for i in state["seen"]], [str(i) for i in state["holdout"]]
    except (KeyError, TypeError) as exc:
        raise InputError(f"not a split tao wrote ({type(exc).__name__}: {exc})", file=paths.split) from None
    return seen, held


def plan_round(
    paths: RunPaths, config: Config, prompts: pool.Pool, version: pool.FileVersion, fits: Callable[[Prompt], bool]
) -> RoundPaths:
    """Choose the next round's prompts (least used first) and write its config, then its plan."""
    planned = planned_rounds(paths)
    index = planned[-1].index + 1 if planned else 1
    used = Counter(p.id for r in planned for p in Plan.read(r).prompts)
    chosen, too_long = prompts.pick(config.data.prompts_per_round, config.run.seed, index, used, fits)
    if not chosen:
        raise InputError("no training prompts (all are held out or too long)", file=version.path)
    plan = Plan(
        round=index,
        parent_round=planned[-1].index if planned else None,
        seed=config.run.seed * 1000 + index,
        prompts_file=version.path,
        prompts_sha256=version.sha256,
        prompts_in_file=version.prompts,
        duplicates_dropped=version.duplicates,
        too_long_skipped=too_long,
        held_out=prompts.held_out(),
        prompts=tuple(chosen),
        eval_prompts=tuple(prompts.eval_prompts(config.eval.max_prompts, fits)),
    )
    rp = paths.round(index)
    write_text(rp.config, to_yaml(config))
    write_json(rp.plan, plan.to_json())
    return rp


def open_pool(paths: RunPaths) -> AbstractContextManager[pool.Pool]:
    """The run's prompt pool; a run made before the pool existed carries its split.json over."""
    earlier = read_split(paths) if not paths.pool.is_file() else None
    prompts = pool.Pool(paths.pool)
    if earlier:
        prompts.carry_over(*earlier)
    return closing(prompts)


def ingest(prompts: pool.Pool, path: Path, config: Config, fits: Callable[[Prompt], bool]) -> pool.FileVersion:
    """Ingest the prompts file (streamed, validated record by record); refuse a file with nothing to train on."""
    skip = config.data.on_invalid == "skip"
    with prompts.ingest(path, config.data.holdout, config.run.seed, config.data.fields, skip) as version:
        if not prompts.pick(1, config.run.seed, 0, Counter(), fits)[0]:
            raise InputError("no training prompts (all are held out or too long)", file=path)
    return version


def scored_rounds(paths: RunPaths, before: int) -> Iterator[tuple[tuple[Prompt, ...], list[Scored]]]:
    """The prompts and scored candidates of each round before round ``before`` that was scored."""
    for rp in paths.rounds():
        if rp.index < before and rp.candidates.is_file():
            yield Plan.read(rp).prompts, [Scored.from_row(row) for row in read_jsonl(rp.candidates)]

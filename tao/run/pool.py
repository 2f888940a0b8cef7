"""The prompt pool of a run: every prompt ingested, on disk (SQLite), and which side of the split it is on.

Prompt logs run to millions of lines, so nothing here holds the file in memory. Ingesting streams the file
line by line, validates each line, and deduplicates by a hash of the conversation against an index on disk;
memory stays flat in the number of lines (scripts/bench_ingest.py). A round then samples its prompts with one
ordered query, reading only the prompts it keeps.

- ``prompts``: one row per prompt id, with the version of the file it was last seen in. A new version of the
  file (its sha256 changed, e.g. lines appended) re-ingests it; prompts no longer in the file stay in the pool
  but are not trained or evaluated on.
- ``sides``: the hold-out assignment, made once per id the first time the run sees it, never changed:
  appending prompts adds assignments (keeping the held-out share at ``fraction`` of all ids seen) without
  moving an old prompt between sides. Which new prompts are held out is decided by a seeded hash of their ids,
  so the same file and seed give the same split on any machine.

An ingest is one transaction: a bad line rolls it back and the pool is as it was. A run directory that does
not exist yet gets its pool in a temporary file, moved in by ``settle`` once the input is known to be good.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tao.core import faults
from tao.core.errors import InputError, ResourceError
from tao.core.prompts import parse_record
from tao.core.records import records, source_sha256
from tao.core.types import Prompt

SKIPPED_LINES_SHOWN = 5  # line numbers recorded for each reason a record was skipped
CACHE_KIB = 16 * 1024  # SQLite page cache and sorter memory: the pool's memory, whatever the number of prompts
SCHEMA = """
CREATE TABLE IF NOT EXISTS files (version INTEGER PRIMARY KEY, path TEXT NOT NULL, sha256 TEXT NOT NULL,
    lines INTEGER NOT NULL, prompts INTEGER NOT NULL, duplicates INTEGER NOT NULL, new INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS prompts (id TEXT PRIMARY KEY, key BLOB NOT NULL, line INTEGER NOT NULL,
    version INTEGER NOT NULL, row TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS prompts_by_key ON prompts (key, version);
CREATE TABLE IF NOT EXISTS sides (id TEXT PRIMARY KEY, held INTEGER NOT NULL, seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS sides_by_order ON sides (held, seq);
"""


def rank(seed: int, salt: str, prompt_id: str) -> str:
    """A seeded pseudo-random order over prompt ids, the same on every machine."""
    return hashlib.sha256(f"{seed}:{salt}:{prompt_id}".encode()).hexdigest()


@dataclass(frozen=True)
class FileVersion:
    """One ingested version of a prompts file."""

    version: int
    path: str
    sha256: str
    lines: int  # non-blank lines read
    prompts: int  # unique prompts in the file
    duplicates: int  # exact duplicates dropped (same conversation as an earlier line)
    new: int  # prompt ids the run had not seen before


class Pool:
    """A run's prompts (see the module docstring). ``fits`` callbacks decide which prompts a model can take."""

    def __init__(self, final: Path):
        self.final = final
        self.path = final if final.is_file() else _scratch_dir(final) / final.name
        self.db = self._connect()
        self.skipped: dict[str, dict] = {}  # the last ingest's records left out (data.on_invalid: skip), by reason
        self.media: dict = {}  # the last ingest's image, audio and file parts left out: parts, prompts, lines

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None)  # transactions are explicit
        db.create_function("rank", 3, rank, deterministic=True)
        try:
            db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise InputError(f"not a prompt pool tao wrote ({exc})", file=self.path) from None
        return db

    def current(self) -> FileVersion | None:
        row = self.db.execute("SELECT * FROM files ORDER BY version DESC LIMIT 1").fetchone()
        return FileVersion(*row) if row else None

    @contextmanager
    def ingest(
        self, path: Path, fraction: float, seed: int, fields: dict[str, str] | None = None, skip: bool = False
    ) -> Iterator[FileVersion]:
        """Ingest ``path`` unless its current version is already in; commits when the block exits cleanly.

        A bad record raises InputError naming it, and then, or on any error in the block, nothing is kept; with
        ``skip`` it is left out instead and counted in :attr:`skipped` by reason. ``fields``: the logs' own names
        (tao/core/prompts.py ``mapped``)."""
        self.skipped, self.media = {}, {}
        sha = source_sha256(path)
        latest = self.current()
        if latest and latest.sha256 == sha:  # already in: this version was validated when it was ingested
            yield replace(latest, path=str(path))
            return
        with self._transaction():
            version = (latest.version if latest else 0) + 1
            digest = hashlib.sha256()
            lines, duplicates = self._read(path, version, digest, fields, skip)
            if digest.hexdigest() != sha:
                raise InputError("the file changed while it was read; run the same command again", file=path)
            unique, new = self._assign(version, fraction, seed)
            if unique == 0:
                raise InputError("no prompts in file", file=path)
            added = FileVersion(version, str(path), sha, lines, unique, duplicates, new)
            self.db.execute("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?)", tuple(added.__dict__.values()))
            yield added

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction: committed when the block ends cleanly, rolled back on any error."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            yield
        except sqlite3.OperationalError as exc:  # disk full, I/O error: SQLite may have rolled back already
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise ResourceError(f"cannot write the prompt pool {self.path}: {exc}") from None
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _read(
        self, path: Path, version: int, digest: Any, fields: dict[str, str] | None, skip: bool
    ) -> tuple[int, int]:
        lines = duplicates = 0
        for number, obj in records(path, digest):
            lines += 1
            try:
                prompt = parse_record(obj, path, number, fields)
            except InputError as exc:
                if not skip:
                    raise
                reason = f"{exc.field}: {exc.problem}" if exc.field else exc.problem
                entry = self.skipped.setdefault(reason, {"count": 0, "first_lines": []})
                entry["count"] += 1
                if len(entry["first_lines"]) < SKIPPED_LINES_SHOWN:
                    entry["first_lines"].append(number)
                continue
            if prompt.parts_left_out:
                self.media["parts"] = self.media.get("parts", 0) + prompt.parts_left_out
                self.media["prompts"] = self.media.get("prompts", 0) + 1
                shown = self.media.setdefault("first_lines", [])
                if len(shown) < SKIPPED_LINES_SHOWN:
                    shown.append(number)
            key = bytes.fromhex(prompt.content_key[:32])  # 128 bits of the hash: a small index, no collisions
            found = self.db.execute(
                "SELECT id, line, key FROM prompts WHERE key = ? AND version = ? UNION ALL "
                "SELECT id, line, key FROM prompts WHERE id = ? AND version = ?",
                (key, version, prompt.id, version),
            ).fetchall()
            if any(k == key for _, _, k in found):
                duplicates += 1
                continue
            same_id = next((line for i, line, _ in found if i == prompt.id), None)
            if same_id is not None:
                raise InputError(
                    f"duplicate id {prompt.id!r} (first on line {same_id}) with a different prompt",
                    file=path,
                    line=number,
                    field="id",
                )
            row = json.dumps(prompt.to_row(), ensure_ascii=False)
            self.db.execute(
                "INSERT INTO prompts VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET key = excluded.key, "
                "line = excluded.line, version = excluded.version, row = excluded.row",
                (prompt.id, key, number, version, row),
            )
            faults.point("ingest")
        return lines, duplicates

    def _assign(self, version: int, fraction: float, seed: int) -> tuple[int, int]:
        """Sides for the ids first seen in ``version``: held out are the lowest-ranked, up to the share."""
        unique = self._count("SELECT count(*) FROM prompts WHERE version = ?", version)
        seen = self._count("SELECT count(*) FROM sides")
        held = self._count("SELECT count(*) FROM sides WHERE held = 1")
        unassigned = "FROM prompts p WHERE p.version = ? AND NOT EXISTS (SELECT 1 FROM sides s WHERE s.id = p.id)"
        new = self._count(f"SELECT count(*) {unassigned}", version)
        take = min(max(round(fraction * (seen + new)) - held, 0), new)
        self.db.execute(
            f"INSERT INTO sides SELECT id, 1, ? + row_number() OVER (ORDER BY rank(?, 'holdout', id)) "
            f"FROM (SELECT p.id {unassigned} ORDER BY rank(?, 'holdout', p.id) LIMIT ?)",
            (seen, seed, version, seed, take),
        )
        self.db.execute(
            f"INSERT INTO sides SELECT p.id, 0, ? + row_number() OVER (ORDER BY p.line) {unassigned}",
            (seen + take, version),
        )
        return unique, new

    def _count(self, sql: str, *args: object) -> int:
        return int(self.db.execute(sql, args).fetchone()[0])

    def carry_over(self, seen: list[str], held: list[str]) -> None:
        """Sides assigned before the pool existed (a run's split.json), kept as they were."""
        kept = set(held)
        order = {i: n for n, i in enumerate(held)} | {i: len(held) + n for n, i in enumerate(seen) if i not in kept}
        with self._transaction():
            self.db.executemany(
                "INSERT OR IGNORE INTO sides VALUES (?, ?, ?)",
                ((i, int(n < len(held)), n + 1) for i, n in order.items()),
            )

    def sides(self) -> tuple[int, int]:
        """(training, held-out) prompts in the current version of the file."""
        rows = self.db.execute(
            "SELECT s.held, count(*) FROM prompts p JOIN sides s ON s.id = p.id WHERE p.version = ? GROUP BY s.held",
            (self._version(),),
        )
        counts = dict(rows.fetchall())
        return counts.get(0, 0), counts.get(1, 0)

    def held_out(self) -> int:
        """Prompt ids held out so far in the run."""
        return self._count("SELECT count(*) FROM sides WHERE held = 1")

    def pick(
        self, count: int, seed: int, round_index: int, used: Counter, fits: Callable[[Prompt], bool]
    ) -> tuple[list[Prompt], int]:
        """A round's training prompts: least-used first (new before revisits), then a seeded order; ``count``
        0 takes all. Returns them and how many were passed over because they do not fit."""
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS used (id TEXT PRIMARY KEY, n INTEGER NOT NULL)")
        self.db.execute("DELETE FROM temp.used")
        self.db.executemany("INSERT INTO temp.used VALUES (?, ?)", used.items())
        rows = self.db.execute(
            "SELECT p.row FROM prompts p JOIN sides s ON s.id = p.id LEFT JOIN temp.used u ON u.id = p.id "
            "WHERE p.version = ? AND s.held = 0 ORDER BY coalesce(u.n, 0), rank(?, ?, p.id)",
            (self._version(), seed, f"round-{round_index}"),
        )
        return _take(rows, count, fits)

    def eval_prompts(self, limit: int, fits: Callable[[Prompt], bool]) -> list[Prompt]:
        """The evaluation set: the first ``limit`` held-out prompts (in assignment order) in the current file;
        ``limit`` -1 takes them all."""
        if limit == 0:
            return []
        rows = self.db.execute(
            "SELECT p.row FROM sides s JOIN prompts p ON p.id = s.id WHERE s.held = 1 AND p.version = ? ORDER BY s.seq",
            (self._version(),),
        )
        return _take(rows, limit, fits)[0]

    def _version(self) -> int:
        latest = self.current()
        return latest.version if latest else 0

    def settle(self) -> None:
        """Move a new run's pool (a temporary file) into the run directory; refuse if one appeared meanwhile."""
        if self.path == self.final:
            return
        if self.final.exists():
            raise InputError("another tao run created this run's prompt pool meanwhile; run again", file=self.final)
        self.db.close()
        self.final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(self.path, self.final)  # same filesystem (the scratch dir is next to the run): atomic
        except OSError:
            partial = self.final.with_name(self.final.name + ".tmp")
            shutil.copyfile(self.path, partial)
            with open(partial, "rb") as fh:
                os.fsync(fh.fileno())
            partial.replace(self.final)
        shutil.rmtree(self.path.parent, ignore_errors=True)
        self.path = self.final
        self.db = self._connect()

    def close(self) -> None:
        self.db.close()
        if self.path != self.final:
            shutil.rmtree(self.path.parent, ignore_errors=True)


def _take(rows: Iterator[tuple[str]], count: int, fits: Callable[[Prompt], bool]) -> tuple[list[Prompt], int]:
    kept: list[Prompt] = []
    passed_over = 0
    for (row,) in rows:
        prompt = Prompt.from_row(json.loads(row))
        if not fits(prompt):
            passed_over += 1
            continue
        kept.append(prompt)
        if len(kept) == count:
            break
    return kept, passed_over


def _scratch_dir(final: Path) -> Path:
    """Where a new run's pool is built: beside the run directory when its parent exists (a rename moves it in),
    else the system's temporary directory."""
    parent = final.parent.parent
    return Path(tempfile.mkdtemp(prefix=f".{final.parent.name}.pool-", dir=parent if parent.is_dir() else None))

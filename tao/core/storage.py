"""Files on disk: every artefact is written to a temporary name, then renamed into place.

A reader therefore sees either the whole previous file or the whole new one, never a half-written one,
whenever the process is killed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tao.core import faults
from tao.core.errors import InputError

TMP_MARK = ".tmp-"  # in the name of every temporary file: ``.<name>.tmp-<pid>``


def write_text(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all: a synced temporary file renamed into place, then the directory synced
    (so the rename itself survives a power cut). A failed write removes its temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        faults.point("write")  # written and synced, not yet in place
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    sync(path.parent)


def sync(path: Path) -> None:
    """fsync a file, or a directory (then the entries created or renamed in it are on disk)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sweep_temporary(root: Path) -> int:
    """Remove the temporary files a killed writer left under ``root`` (call with the run's lock held: no other
    writer is at work there). Returns how many."""
    leftovers = [p for p in root.rglob(f".*{TMP_MARK}*") if p.is_file()]
    for p in leftovers:
        p.unlink(missing_ok=True)
    return len(leftovers)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", file=path) from None


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file this tool wrote (blank lines skipped)."""
    rows = []
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                try:
                    if line.strip():
                        rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InputError(f"invalid JSON: {exc.msg}", file=path, line=number) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", file=path) from None
    return rows


def publish_dir(tmp: Path, final: Path) -> None:
    """Move a fully written directory into place, replacing an older one; its files and the move are synced."""
    for p in tmp.rglob("*"):
        if p.is_file():
            sync(p)
    if final.exists():
        shutil.rmtree(final)
    faults.point("publish")  # the old one gone, the new one not yet in place
    os.replace(tmp, final)
    sync(final.parent)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def locked(path: Path, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a run directory's lock file) or fail with a clear error; with ``wait``,
    wait for the holder instead (a short update such as the registry's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")  # noqa: SIM115 (held open for the lock's lifetime)
    try:
        fcntl.flock(fh, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise InputError(f"run directory is in use by {holder}; wait for it or stop it", file=path.parent) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}")
    fh.flush()
    try:
        yield
    finally:
        fh.close()

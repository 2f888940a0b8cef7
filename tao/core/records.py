"""The records of a prompts source, whatever form the logs come in, read one at a time.

- JSONL (``.jsonl``, ``.json``, ``.ndjson``), optionally gzip'd (``.gz``): one object per line.
- CSV (``.csv``): one record per row, named by the header; a ``messages``, ``request`` or ``body`` column holds
  JSON text.
- Parquet (``.parquet``): one record per row, read a batch of rows at a time.
- A directory a ``datasets`` ``save_to_disk`` wrote (one split): one record per row, memory-mapped.

In a table a column a record does not use is null: such cells are left out of the record.

:func:`records` yields ``(number, object)``: the line for JSONL, the file's line of the row for CSV, the row
(1-based) otherwise. Memory stays flat in the size of the source. Every byte read goes into ``digest``, so that a
source can be identified by content: :func:`source_sha256` hashes the same bytes.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tao.core.errors import InputError

JSON_COLUMNS = ("messages", "request", "body")  # columns of a CSV that hold JSON text
MAX_LINE = 32 * 2**20  # bytes of one record's line at most: memory stays bounded whatever the input
BATCH_ROWS = 1024  # Parquet rows read at a time


def source_format(path: Path) -> str:
    """jsonl, jsonl.gz, csv, parquet or datasets, from the name (a directory: a saved dataset)."""
    _regular(path)
    if path.is_dir():
        if (path / "dataset_dict.json").is_file():
            raise InputError("a dataset with several splits: give the directory of one split", file=path)
        if (path / "state.json").is_file() or (path / "dataset_info.json").is_file():
            return "datasets"
        raise InputError("a directory, but not a dataset saved with datasets' save_to_disk", file=path)
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if suffixes and suffixes[-1] == ".gz":
        return "jsonl.gz"
    return {".csv": "csv", ".parquet": "parquet"}.get(suffixes[-1] if suffixes else "", "jsonl")


def records(path: Path, digest: Any) -> Iterator[tuple[int, Any]]:
    """The source's records with their numbers; bad bytes or JSON name their line."""
    kind = source_format(path)
    if kind == "datasets":
        _hash_files(path, digest)
        yield from _dataset_rows(path)
        return
    try:
        raw = open(path, "rb")  # noqa: SIM115 (closed by the with below)
    except FileNotFoundError:
        raise InputError("file not found", file=path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=path) from None
    with raw:
        if kind == "parquet":
            yield from _parquet_rows(path, raw, digest)
        elif kind == "csv":
            yield from _csv_rows(path, _lines(path, _Hashing(raw, digest)))
        else:
            stream = gzip.GzipFile(fileobj=_Hashing(raw, digest)) if kind == "jsonl.gz" else _Hashing(raw, digest)
            for number, text in _lines(path, stream):
                if text.strip():
                    yield number, parse_json(text, path, number)


def parse_json(text: str, path: Path, number: int | None = None) -> Any:
    """JSON text as Python values a prompt can hold: invalid JSON, numbers too long to convert, nesting too deep
    and strings that are not Unicode (lone surrogate escapes) are one-line errors naming the line."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON ({exc.msg} at column {exc.colno})", file=path, line=number) from None
    except ValueError as exc:  # an integer of thousands of digits
        raise InputError(f"a value JSON allows but tao cannot hold ({exc})", file=path, line=number) from None
    except RecursionError:
        raise InputError("JSON nested too deep", file=path, line=number) from None
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(
            "a string that is not valid Unicode (a lone surrogate escape)", file=path, line=number
        ) from None
    except RecursionError:
        raise InputError("JSON nested too deep", file=path, line=number) from None
    return value


def source_sha256(path: Path) -> str:
    """sha256 of a source's bytes; of a directory, of its files' names and bytes in name order."""
    _regular(path)
    digest = hashlib.sha256()
    _hash_files(path, digest)
    return digest.hexdigest()


def _hash_files(path: Path, digest: Any) -> None:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    try:
        for file in files:
            if path.is_dir():
                digest.update(str(file.relative_to(path)).encode())
            with open(file, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
    except FileNotFoundError:
        raise InputError("file not found", file=path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=path) from None


def _regular(path: Path) -> None:
    """A named pipe or a device would block, or grow without end, and a source is read twice: refuse it."""
    if path.exists() and not path.is_file() and not path.is_dir():
        raise InputError("not a regular file (a pipe or a device cannot be read twice)", file=path)


class _Hashing(io.RawIOBase):
    """A binary stream that feeds every byte it reads into a digest."""

    def __init__(self, raw: Any, digest: Any):
        self.raw, self.digest = raw, digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)
        if n:
            self.digest.update(memoryview(buffer)[:n])
        return n or 0


def _lines(path: Path, stream: Any) -> Iterator[tuple[int, str]]:
    """UTF-8 lines with their numbers (a leading byte-order mark dropped); a line over ``MAX_LINE`` bytes is an
    error, found without holding more than that in memory."""
    reader = io.BufferedReader(stream)
    number = 0
    try:
        while data := reader.readline(MAX_LINE + 1):
            number += 1
            if len(data) > MAX_LINE:
                raise InputError(f"a line longer than {MAX_LINE // 2**20} MiB", file=path, line=number)
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"not UTF-8 (byte {exc.start})", file=path, line=number) from None
            yield number, text.removeprefix("\ufeff") if number == 1 else text
    except (gzip.BadGzipFile, EOFError) as exc:
        raise InputError(f"not a readable gzip file ({exc})", file=path) from None


def _csv_rows(path: Path, lines: Iterator[tuple[int, str]]) -> Iterator[tuple[int, Any]]:
    numbers: list[int] = []

    def text() -> Iterator[str]:
        for number, line in lines:
            numbers.append(number)
            yield line

    reader = csv.DictReader(text())
    try:
        for row in reader:
            record: dict[str, Any] = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
            for key in JSON_COLUMNS:
                if isinstance(record.get(key), str):
                    try:
                        record[key] = parse_json(record[key], path, numbers[-1])
                    except InputError as exc:
                        raise InputError(f"not JSON ({exc.problem})", file=path, line=numbers[-1], field=key) from None
            yield numbers[-1], record
    except csv.Error as exc:
        raise InputError(f"not CSV ({exc})", file=path, line=numbers[-1] if numbers else None) from None


def _parquet_rows(path: Path, raw: Any, digest: Any) -> Iterator[tuple[int, Any]]:
    import pyarrow
    import pyarrow.parquet as pq

    while chunk := raw.read(1 << 20):
        digest.update(chunk)
    raw.seek(0)
    try:
        table = pq.ParquetFile(raw)
        number = 0
        for batch in table.iter_batches(batch_size=BATCH_ROWS):
            for row in batch.to_pylist():
                number += 1
                yield number, _present(row)
    except (pyarrow.ArrowException, OSError) as exc:
        raise InputError(f"not a readable Parquet file ({str(exc).splitlines()[0]})", file=path) from None


def _dataset_rows(path: Path) -> Iterator[tuple[int, Any]]:
    import datasets

    try:
        dataset = datasets.load_from_disk(str(path))
    except (OSError, ValueError, FileNotFoundError) as exc:
        raise InputError(f"not a readable saved dataset ({str(exc).splitlines()[0]})", file=path) from None
    for number, row in enumerate(dataset, start=1):
        yield number, _present(row)


def _present(row: dict[str, Any]) -> dict[str, Any]:
    """A table's row without its empty cells: a column the record does not use is absent, not null."""
    return {k: v for k, v in row.items() if v is not None}

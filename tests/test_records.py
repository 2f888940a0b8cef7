"""Logs as they come: JSONL (gzip'd or not), CSV, Parquet, a saved datasets directory; the logs' own field names;
records that are not prompts skipped and counted when asked."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from pathlib import Path

import pytest

from tao.core.errors import InputError
from tao.core.prompts import load_prompts
from tao.core.records import records, source_sha256
from tao.run.pool import Pool

ROWS = [
    {"id": "a", "prompt": "Say hi in lowercase."},
    {"id": "b", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say bye."}]},
    {"id": "c", "prompt": "Name a colour.", "team": "billing"},
]


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def write_all_forms(tmp_path: Path, rows: list[dict]) -> dict[str, Path]:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    forms = {"jsonl": tmp_path / "logs.jsonl", "gz": tmp_path / "logs.jsonl.gz", "csv": tmp_path / "logs.csv"}
    forms["jsonl"].write_text(jsonl(rows))
    forms["gz"].write_bytes(gzip.compress(jsonl(rows).encode()))
    with open(forms["csv"], "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["id", "prompt", "messages", "team"])
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "messages": json.dumps(r["messages"]) if "messages" in r else ""})
    table = pa.Table.from_pylist(
        [{**r, "messages": r.get("messages"), "prompt": r.get("prompt"), "team": r.get("team")} for r in rows]
    )
    forms["parquet"] = tmp_path / "logs.parquet"
    pq.write_table(table, forms["parquet"])
    forms["datasets"] = tmp_path / "saved"
    datasets.Dataset.from_list(
        [{**r, "messages": r.get("messages"), "prompt": r.get("prompt"), "team": r.get("team")} for r in rows]
    ).save_to_disk(str(forms["datasets"]))
    return forms


def test_every_form_of_logs_gives_the_same_prompts(tmp_path):
    forms = write_all_forms(tmp_path, ROWS)
    expected = load_prompts(forms["jsonl"]).prompts
    for name, path in forms.items():
        got = load_prompts(path)
        assert [(p.id, p.messages) for p in got.prompts] == [(p.id, p.messages) for p in expected], name
        assert got.prompts[2].metadata.get("team") == "billing", name
        assert got.sha256 == source_sha256(path), name  # the bytes read are the bytes that identify the source


def test_a_gzip_file_is_identified_by_its_compressed_bytes_and_streamed(tmp_path):
    path = tmp_path / "big.jsonl.gz"
    path.write_bytes(gzip.compress(jsonl([{"id": str(i), "prompt": f"q{i}"} for i in range(3000)]).encode()))
    digest = hashlib.sha256()
    seen = sum(1 for _ in records(path, digest))
    assert seen == 3000 and digest.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_logs_own_field_names_are_mapped(tmp_path):
    path = tmp_path / "gateway.jsonl"
    rows = [
        {"request_id": "r1", "question": "What is 2+2?"},
        {"request_id": "r2", "request": {"body": {"messages": [{"role": "user", "content": "Hi there"}]}}},
    ]
    path.write_text(jsonl(rows))
    fields = {"prompt": "question", "id": "request_id", "messages": "request.body.messages"}
    got = load_prompts(path, fields).prompts
    assert [(p.id, p.text) for p in got] == [("r1", "What is 2+2?"), ("r2", "Hi there")]
    with pytest.raises(InputError, match="gateway.jsonl:1: no prompt"):
        load_prompts(path)  # without the mapping the logs name nothing tao reads


def test_invalid_records_stop_the_ingest_or_are_skipped_and_counted(tmp_path):
    path = tmp_path / "messy.jsonl"
    bad = [
        {"id": "x1", "messages": [{"role": "assistant", "content": "no user turn"}]},
        {"id": "x2", "messages": [{"role": "assistant", "content": "again"}]},
        {"id": "x3", "note": "no prompt at all"},
    ]
    path.write_text(jsonl(ROWS[:1] + bad + ROWS[1:]))
    pool = Pool(tmp_path / "stop" / "pool.sqlite")
    with pytest.raises(InputError, match="messy.jsonl:2: messages\\[-1\\].role"), pool.ingest(path, 0.0, 0):
        pass
    assert pool.current() is None  # nothing kept
    pool.close()
    pool = Pool(tmp_path / "skip" / "pool.sqlite")
    with pool.ingest(path, 0.0, 0, skip=True) as version:
        pass
    assert (version.lines, version.prompts) == (6, 3)
    assert pool.skipped == {
        "messages[-1].role: the last message must be the user's (or a tool's result), got role 'assistant'": {
            "count": 2,
            "first_lines": [2, 3],
        },
        'no prompt: expected "prompt", "messages", or a request log with "request"/"body"': {
            "count": 1,
            "first_lines": [4],
        },
    }
    pool.close()


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.parquet", b"PAR1 not really", "not a readable Parquet file"),
        ("bad.jsonl.gz", b"\x1f\x8b not gzip data", "not a readable gzip file"),
        ("bad.csv", 'id,messages\na,"[not json"\n', ":2: messages: not JSON"),
    ],
)
def test_an_unreadable_source_is_one_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InputError) as caught:
        load_prompts(path)
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_a_run_reads_parquet_and_keeps_the_count_of_what_it_skipped(tiny_model, tmp_path):
    from tests.test_loop import tao_run

    rows = [{"id": f"p{i}", "prompt": f"say something {i}", "messages": None} for i in range(12)]
    rows[3] = {"id": "bad", "prompt": None, "messages": [{"role": "assistant", "content": "no user turn"}]}
    forms = write_all_forms(tmp_path, [{k: v for k, v in r.items() if v is not None} for r in rows])
    result = tao_run(forms["parquet"], tiny_model, tmp_path / "run", "--set", "data.on_invalid=skip", catch=True)
    assert result.exit_code == 0, result.output
    skipped = json.loads((tmp_path / "run" / "run.json").read_text())["skipped"]
    (report,) = skipped.values()
    reason = "messages[-1].role: the last message must be the user's (or a tool's result), got role 'assistant'"
    assert report == {reason: {"count": 1, "first_lines": [4]}}
    assert "1 record(s) skipped (lines 4...)" in result.output


def test_a_pipe_is_refused_at_once_and_a_huge_line_is_an_error(tmp_path, monkeypatch):
    import os
    import threading

    pipe = tmp_path / "logs.jsonl"
    os.mkfifo(pipe)
    outcome = []
    reader = threading.Thread(target=lambda: outcome.append(pytest.raises(InputError, load_prompts, pipe)))
    reader.start()
    reader.join(10)
    assert outcome and "not a regular file" in str(outcome[0].value)  # it did not wait for a writer
    monkeypatch.setattr("tao.core.records.MAX_LINE", 1000)
    long = tmp_path / "long.jsonl"
    long.write_text(jsonl(ROWS[:1]) + json.dumps({"prompt": "x" * 5000}) + "\n")
    with pytest.raises(InputError, match=r"long\.jsonl:2: a line longer than"):
        load_prompts(long)

import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from tao.cli import main
from tao.core.errors import InputError
from tao.core.prompts import load_prompts
from tao.run.pool import Pool
from tests.conftest import write_jsonl


def test_each_format_is_read(tmp_path):
    path = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"prompt": "plain question", "id": 7, "team": "support"},
            {
                "messages": [
                    {"role": "system", "content": "be kind"},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "chat question"},
                ]
            },
            {
                "request": {"model": "x", "messages": [{"role": "user", "content": "logged request"}]},
                "latency_ms": 12,
            },
            {
                "custom_id": "b-1",
                "method": "POST",
                "body": {
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": "part one"},
                                {"type": "text", "text": "part two"},
                            ],
                        }
                    ]
                },
            },
            "",  # blank lines are skipped
        ],
    )
    pf = load_prompts(path)
    a, b, c, d = pf.prompts
    assert (a.id, a.text, a.metadata) == ("7", "plain question", {"team": "support"})
    assert [m.role for m in b.messages] == [
        "system",
        "user",
        "assistant",
        "user",
    ] and b.text == "chat question"
    assert b.id.startswith("p-") and len(b.id) == 14  # derived from the content
    assert c.text == "logged request" and c.metadata == {"latency_ms": 12}
    assert d.id == "b-1" and d.text == "part one\npart two" and d.metadata == {"method": "POST"}
    assert pf.lines == 4 and pf.duplicates == 0 and len(pf.sha256) == 64


def test_exact_duplicates_are_dropped_and_counted(tmp_path):
    path = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"prompt": "a"},
            {"prompt": "b"},
            {"prompt": "a"},
            {"messages": [{"role": "user", "content": "a"}]},  # same conversation as {"prompt": "a"}
            {"prompt": "a", "id": "other-id"},  # same content, another id: still a duplicate
        ],
    )
    pf = load_prompts(path)
    assert [p.text for p in pf.prompts] == ["a", "b"] and pf.duplicates == 3


def test_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"prompt": "x"}).encode() + b"\n")
    assert load_prompts(path).prompts[0].text == "x"


BAD = [
    ('{"prompt": "ok"}\n{"prompt": "broken"\n', 2, None, "invalid JSON"),
    ('["a list"]\n', 1, None, "expected a JSON object"),
    ('{"text": "no prompt key"}\n', 1, None, "no prompt"),
    ('{"prompt": "   "}\n', 1, "prompt", "empty prompt"),
    ('{"prompt": 42}\n', 1, "prompt", "expected a string"),
    ('{"messages": "hi"}\n', 1, "messages", "non-empty list"),
    ('{"messages": [{"role": "robot", "content": "x"}]}\n', 1, "messages[0].role", "role must be one of"),
    (
        '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}\n',
        1,
        "messages[-1].role",
        "last message must be the user's",
    ),
    (
        '{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}\n',
        1,
        "messages[-1].content",
        "empty prompt",
    ),
    ('{"messages": [{"role": "user", "content": null}]}\n', 1, "messages[0].content", "expected a string"),
    ('{"body": {"model": "x"}}\n', 1, "body", "'messages' list"),
    ('{"prompt": "a", "messages": []}\n', 1, None, "ambiguous"),
    ('{"prompt": "a", "id": [1]}\n', 1, "id", "non-empty string or integer"),
    ('{"prompt": "a", "completions": 1}\n', 1, "completions", "reserved"),
    (
        '{"prompt": "a", "id": "x"}\n{"prompt": "b", "id": "x"}\n',
        2,
        "id",
        "duplicate id 'x' (first on line 1)",
    ),
    ("\n\n", None, None, "no prompts in file"),
]


@pytest.mark.parametrize("text, line, field, problem", BAD)
def test_bad_lines_name_file_line_and_field(tmp_path, text, line, field, problem):
    path = tmp_path / "bad.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_prompts(path)
    assert (err.value.line, err.value.field) == (line, field)
    assert problem in err.value.problem and err.value.file == str(path)


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n')
    with pytest.raises(InputError) as err:
        load_prompts(path)
    assert err.value.line == 2 and "not UTF-8" in str(err.value)


@pytest.mark.parametrize("text, line, field, problem", BAD[:4] + BAD[-2:])
def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, tiny_model, text, line, field, problem):
    path = tmp_path / "bad.jsonl"
    path.write_text(text, encoding="utf-8")
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(
        main, ["run", "--prompts", str(path), "--model", str(tiny_model), "--run-dir", str(run_dir)]
    )
    assert result.exit_code == 2
    message = result.output.strip()
    assert message.startswith("tao: error: ") and "\n" not in message and "Traceback" not in message
    assert f"{path}:{line}" in message if line else str(path) in message
    assert not run_dir.exists()


def test_missing_file_is_a_clean_error(tmp_path):
    result = CliRunner().invoke(main, ["run", "--prompts", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2 and "file not found" in result.output


def _pool(tmp_path: Path, ids: list[str], fraction: float = 0.2, seed: int = 0, name: str = "pool") -> Pool:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"id": i, "prompt": f"prompt {i}"}) + "\n" for i in ids))
    pool = Pool(tmp_path / name / "pool.sqlite")
    with pool.ingest(path, fraction, seed):
        pass
    pool.settle()
    return pool


def _held(pool: Pool, limit: int = 10**6) -> list[str]:
    return [p.id for p in pool.eval_prompts(limit, lambda p: True)]


def test_holdout_is_deterministic_and_stable_when_prompts_are_appended(tmp_path):
    ids = [f"id-{i}" for i in range(100)]
    first = _pool(tmp_path, ids, name="a")
    assert _held(first) == _held(_pool(tmp_path, ids, name="b"))  # same input, same split
    assert len(_held(first)) == 20 and set(_held(first)) <= set(ids)
    assert _held(_pool(tmp_path, ids, seed=1, name="c")) != _held(first)  # the seed matters
    before = _held(first)
    grown_file = tmp_path / "a.jsonl"
    grown_file.write_text(
        grown_file.read_text() + "".join(json.dumps({"id": f"new-{i}", "prompt": f"new {i}"}) + "\n" for i in range(50))
    )
    with first.ingest(grown_file, 0.2, 0) as version:
        assert (version.version, version.prompts, version.new) == (2, 150, 50)
    assert _held(first)[:20] == before  # old assignments never move
    assert len(_held(first)) == 30  # the share stays at 20% of all prompts seen
    assert first.sides() == (120, 30)
    assert _held(first, limit=5) == before[:5]


def test_a_bad_line_leaves_the_pool_as_it_was(tmp_path):
    pool = _pool(tmp_path, [f"id-{i}" for i in range(10)])
    bad = tmp_path / "pool.jsonl"
    bad.write_text(bad.read_text() + '{"id": "x", "prompt": "fine"}\n{"prompt": 5}\n')
    with pytest.raises(InputError, match="pool.jsonl:12"), pool.ingest(bad, 0.2, 0):
        pass
    assert pool.current().version == 1 and pool.sides() == (8, 2)
    assert pool.db.execute("SELECT count(*) FROM prompts").fetchone()[0] == 10


def test_round_choice_prefers_unused_prompts_and_passes_over_what_does_not_fit(tmp_path):
    ids = [f"id-{i}" for i in range(10)]
    pool = _pool(tmp_path, ids, fraction=0.0)
    used = Counter(ids[:6])
    chosen = [p.id for p in pool.pick(4, 0, 2, used, lambda p: True)[0]]
    assert set(chosen) == set(ids[6:])
    assert [p.id for p in pool.pick(4, 0, 2, used, lambda p: True)[0]] == chosen  # seeded
    assert len(pool.pick(0, 0, 1, Counter(), lambda p: True)[0]) == 10  # 0 = all
    kept, passed_over = pool.pick(0, 0, 1, Counter(), lambda p: p.id != "id-3")
    assert len(kept) == 9 and passed_over == 1 and "id-3" not in {p.id for p in kept}


def test_an_ingest_that_cannot_write_is_one_resource_error_and_keeps_the_pool(tmp_path):
    from tao.core.errors import ResourceError

    pool = _pool(tmp_path, [f"id-{i}" for i in range(10)])
    more = tmp_path / "more.jsonl"
    more.write_text("".join(json.dumps({"id": f"x{i}", "prompt": "long " * 200 + str(i)}) + "\n" for i in range(300)))
    pages = pool.db.execute("PRAGMA page_count").fetchone()[0]
    pool.db.execute(f"PRAGMA max_page_count = {pages + 5}")  # a full disk, for this pool
    with pytest.raises(ResourceError, match="cannot write the prompt pool"), pool.ingest(more, 0.2, 0):
        pass
    assert pool.current().version == 1 and pool.sides() == (8, 2)


def test_a_pool_that_appeared_meanwhile_is_not_overwritten(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "hi"}) + "\n")
    final = tmp_path / "run" / "pool.sqlite"
    pool = Pool(final)
    with pool.ingest(path, 0.0, 0):
        pass
    final.parent.mkdir()
    final.write_bytes(b"another run's pool")
    with pytest.raises(InputError, match="created this run's prompt pool meanwhile"):
        pool.settle()
    assert final.read_bytes() == b"another run's pool"
    pool.close()
    assert not any(p.name.startswith(".run.pool-") for p in tmp_path.iterdir())  # the scratch copy is gone

"""Every kind of file tao reads, malformed: one line naming the file (and line and field where there is one),
exit code 2, no traceback, and nothing written: no run directory, no output file, a run directory unchanged."""

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from tao.cli import main
from tests.conftest import TINY

GOOD = '{"prompt": "say hi", "id": "a"}\n{"prompt": "say bye", "id": "b"}\n'


@dataclass(frozen=True)
class Case:
    name: str
    files: dict[str, str | bytes]  # written under tmp_path before the command
    args: tuple[str, ...]  # {tmp} and {model} are filled in
    message: str  # expected in the error line
    where: str = ""  # expected in the error line too: "FILE:LINE" or a field name
    untouched: tuple[str, ...] = field(default=("run",))  # paths under tmp_path that must not change


RUN = ("run", "--prompts", "{tmp}/p.jsonl", "--run-dir", "{tmp}/run", "--model", "{model}")
SFT = ("sft", "--data", "{tmp}/l.jsonl", "--out", "{tmp}/sft", "--model", "{model}")
PAIRS = ("reward", "train", "--pairs", "{tmp}/pairs.jsonl", "--out", "{tmp}/rm", "--model", "{model}")
EXPLORE = ("explore", "--prompts", "{tmp}/p.jsonl", "--out", "{tmp}/out.jsonl", "--model", "{model}")

CASES = [
    # prompts files
    Case("invalid utf-8", {"p.jsonl": b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n'}, RUN, "not UTF-8", "p.jsonl:2"),
    Case("truncated last line", {"p.jsonl": GOOD + '{"prompt": "half'}, RUN, "invalid JSON", "p.jsonl:3"),
    Case("empty file", {"p.jsonl": ""}, RUN, "no prompts in file", "p.jsonl"),
    Case("only blank lines", {"p.jsonl": "\n  \n\n"}, RUN, "no prompts in file", "p.jsonl"),
    Case("missing file", {}, RUN, "file not found", "p.jsonl"),
    Case("a directory", {"p.jsonl/x": "x"}, RUN, "not a dataset saved", "p.jsonl"),
    Case("array line", {"p.jsonl": '["say hi"]\n'}, RUN, "expected a JSON object", "p.jsonl:1"),
    # valid JSON that the rest of the program cannot hold
    Case("lone surrogate", {"p.jsonl": GOOD + '{"prompt": "\\ud800 x"}\n'}, RUN, "not valid Unicode", "p.jsonl:3"),
    Case(
        "a number of 5000 digits",
        {"p.jsonl": '{"prompt": "x", "n": ' + "9" * 5000 + "}\n"},
        RUN,
        "cannot hold",
        "p.jsonl:1",
    ),
    Case(
        "nesting 100000 deep",
        {"p.jsonl": '{"prompt": "x", "n": ' + "[" * 100000 + "]" * 100000 + "}\n"},
        RUN,
        "nested too deep",
        "p.jsonl:1",
    ),
    Case(
        "a device",
        {},
        ("run", "--prompts", "/dev/zero", "--run-dir", "{tmp}/run", "--model", "{model}"),
        "not a regular file",
        "/dev/zero",
    ),
    Case("no prompt field", {"p.jsonl": '{"text": "hi"}\n'}, RUN, "no prompt", "p.jsonl:1"),
    Case("two prompt fields", {"p.jsonl": '{"prompt": "a", "messages": []}\n'}, RUN, "ambiguous", "p.jsonl:1"),
    Case(
        "number content",
        {"p.jsonl": '{"messages": [{"role": "user", "content": 5}]}\n'},
        RUN,
        "expected a string, got int",
        "messages[0].content",
    ),
    Case("null prompt", {"p.jsonl": '{"prompt": null}\n'}, RUN, "expected a string, got NoneType", "prompt"),
    Case("empty prompt", {"p.jsonl": '{"prompt": "   "}\n'}, RUN, "empty prompt", "p.jsonl:1"),
    Case(
        "unknown role",
        {"p.jsonl": '{"messages": [{"role": "robot", "content": "x"}]}\n'},
        RUN,
        "role must be one of",
        "messages[0].role",
    ),
    Case(
        "last turn not the user's",
        {
            "p.jsonl": json.dumps(
                {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}
            )
            + "\n"
        },
        RUN,
        "last message must be the user's",
        "messages[-1].role",
    ),
    Case(
        "tool calls",
        {
            "p.jsonl": json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": "weather?"},
                        {"role": "assistant", "content": None, "tool_calls": [{"id": "1", "type": "function"}]},
                        {"role": "tool", "content": "sunny"},
                        {"role": "user", "content": "so?"},
                    ]
                }
            )
            + "\n"
        },
        RUN,
        "expected a call with a function name",
        "messages[1].tool_calls[0]",
    ),
    Case(
        "unknown content part",
        {"p.jsonl": json.dumps({"messages": [{"role": "user", "content": [{"type": "hologram"}]}]}) + "\n"},
        RUN,
        "expected a text, image, audio or file part",
        "content[0]",
    ),
    Case(
        "duplicate id",
        {"p.jsonl": '{"prompt": "a", "id": 1}\n{"prompt": "b", "id": 1}\n'},
        RUN,
        "duplicate id '1'",
        "p.jsonl:2",
    ),
    Case("id not a string", {"p.jsonl": '{"prompt": "a", "id": [1]}\n'}, RUN, "non-empty string or integer", "id"),
    Case("reserved metadata", {"p.jsonl": '{"prompt": "a", "completions": 1}\n'}, RUN, "reserved", "completions"),
    Case(
        "every prompt too long",
        {"p.jsonl": json.dumps({"prompt": "word " * 3000}) + "\n"},
        RUN,
        "no training prompts",
        "p.jsonl",
    ),
    # configs
    Case(
        "config unknown key",
        {"p.jsonl": GOOD, "c.yaml": "rollout:\n  temprature: 0.7\n"},
        (*RUN, "--config", "{tmp}/c.yaml"),
        "unknown key",
        "rollout.temprature",
    ),
    Case(
        "config wrong type",
        {"p.jsonl": GOOD, "c.yaml": "run:\n  rounds: two\n"},
        (*RUN, "--config", "{tmp}/c.yaml"),
        "expected an integer",
        "run.rounds",
    ),
    Case("negative time budget", {"p.jsonl": GOOD}, (*RUN, "--minutes", "-5"), "must be >= 0", "run.minutes"),
    Case(
        "config invalid YAML",
        {"p.jsonl": GOOD, "c.yaml": "run:\n  rounds: [1\n"},
        (*RUN, "--config", "{tmp}/c.yaml"),
        "invalid YAML",
        "c.yaml:",
    ),
    Case(
        "config not a mapping",
        {"p.jsonl": GOOD, "c.yaml": "- 1\n"},
        (*RUN, "--config", "{tmp}/c.yaml"),
        "mapping",
        "c.yaml",
    ),
    Case(
        "config with tabs and BOM",
        {"p.jsonl": GOOD, "c.yaml": "\ufeffrun:\n\trounds: 2\n"},
        (*RUN, "--config", "{tmp}/c.yaml"),
        "invalid YAML",
        "c.yaml",
    ),
    Case(
        "override out of range",
        {"p.jsonl": GOOD},
        (*RUN, "--set", "update.group_size=64"),
        "must be <= rollout.num_candidates",
        "update.group_size",
    ),
    Case(
        "unknown trl field",
        {"p.jsonl": GOOD},
        (*RUN, "--set", "update.trl.max_grad_nrom=0.5"),
        "not a field of trl's GRPOConfig",
        "update.trl.max_grad_nrom",
    ),
    Case(
        "trl field tao sets itself",
        {"p.jsonl": GOOD},
        (*RUN, "--set", "update.trl.beta=0.5"),
        "set by tao from update.beta",
        "update.trl.beta",
    ),
    # strategy guides and scorers named in the config
    Case(
        "guide file empty",
        {"p.jsonl": GOOD, "g.txt": "\n---\n"},
        (*RUN, "--set", "rollout.strategies=[guide:{tmp}/g.txt]"),
        "the guide file is empty",
        "g.txt",
    ),
    Case(
        "scorer file missing",
        {"p.jsonl": GOOD},
        (*RUN, "--reward", "{tmp}/nope.py:score"),
        "reward function file not found",
        "nope.py",
    ),
    Case("unknown rule", {"p.jsonl": GOOD}, (*RUN, "--reward", "rule:telepathy"), "unknown rule", "rule:telepathy"),
    # labeled data (tao sft)
    Case("labeled: no answer", {"l.jsonl": '{"prompt": "a"}\n'}, SFT, "no answer", "l.jsonl:1", ("sft",)),
    Case(
        "labeled: empty answer",
        {"l.jsonl": '{"prompt": "a", "completion": ""}\n'},
        SFT,
        "expected a non-empty string",
        "completion",
        ("sft",),
    ),
    Case(
        "labeled: truncated",
        {"l.jsonl": '{"prompt": "a", "completion": "b"}\n{"prompt"'},
        SFT,
        "invalid JSON",
        "l.jsonl:2",
        ("sft",),
    ),
    # preference pairs (tao reward train)
    Case(
        "pairs: same answers",
        {"pairs.jsonl": '{"prompt": "p", "chosen": "a", "rejected": "a"}\n'},
        PAIRS,
        "chosen and rejected are the same answer",
        "pairs.jsonl:1",
        ("rm",),
    ),
    Case(
        "pairs: no rejected",
        {"pairs.jsonl": '{"prompt": "p", "chosen": "a"}\n'},
        PAIRS,
        'missing "rejected"',
        "pairs.jsonl:1",
        ("rm",),
    ),
    # files tao wrote, damaged since
    Case(
        "run.json not JSON",
        {"p.jsonl": GOOD, "run/run.json": "{oops", "run/split.json": "{}"},
        RUN,
        "cannot read",
        "run.json",
    ),
    Case(
        "split.json of another shape",
        {"p.jsonl": GOOD, "run/split.json": "[]"},
        RUN,
        "not a split tao wrote",
        "split.json",
    ),
    Case(
        "pool.sqlite not a database",
        {"p.jsonl": GOOD, "run/pool.sqlite": "not sqlite at all"},
        RUN,
        "not a prompt pool tao wrote",
        "pool.sqlite",
    ),
    Case(
        "run of another base model",
        {"p.jsonl": GOOD, "run/run.json": '{"base_model": {"sha256": "x"}}'},
        RUN,
        "started on another base model",
        "run.json",
    ),
    Case(
        "explore with a pickled adapter",
        {"p.jsonl": GOOD, "ad/adapter_config.json": "{}", "ad/adapter_model.bin": "x"},
        (*EXPLORE, "--adapter", "{tmp}/ad"),
        "safetensors only",
        "ad",
        ("out.jsonl",),
    ),
]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, tiny_model):
    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    before = {name: snapshot(tmp_path / name) if (tmp_path / name).is_dir() else None for name in case.untouched}
    args = [a.format(tmp=tmp_path, model=tiny_model) for a in case.args]
    if args[0] == "run":
        args += [x for s in TINY if not s.startswith("reward") for x in ("--set", s)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tao: error: "), result.output
    assert case.message in lines[0] and case.where in lines[0]
    assert "Traceback" not in result.output
    for name, files in before.items():
        after = tmp_path / name
        if files is None:
            assert not after.exists(), f"{name} was written"
        else:
            assert snapshot(after) == files, f"{name} changed"


def test_the_table_covers_every_kind_of_file():
    assert len(CASES) >= 25
    kinds = {c.args[0] for c in CASES} | {k.split(".")[-1] for c in CASES for k in c.files}
    assert {"run", "sft", "explore", "reward", "jsonl", "yaml", "txt", "json", "bin"} <= kinds

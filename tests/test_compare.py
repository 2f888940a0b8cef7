"""`tao sft`, `tao eval`, `tao compare`: the baseline trains, models are scored per item, reports hold the numbers."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from tao import evaluation
from tao.commands.compare import summarize, write_report
from tao.core.types import Answer
from tests.conftest import cli, write_jsonl


def rows(scores):
    return [Answer(pid, "", True, s, {}, "r") for pid, s in scores.items()]


def test_bootstrap_interval_contains_the_mean_and_narrows_with_data():
    small = evaluation.bootstrap([0.0, 1.0] * 10, seed=1)
    large = evaluation.bootstrap([0.0, 1.0] * 500, seed=1)
    assert small.mean == large.mean == 0.5 and small.n == 20
    assert small.low < 0.5 < small.high and large.low < 0.5 < large.high
    assert large.high - large.low < (small.high - small.low) / 4  # ~1/sqrt(50) as wide
    constant = evaluation.bootstrap([0.7] * 9)
    assert constant.low == constant.high == pytest.approx(0.7)


def test_differences_are_paired_per_item():
    base = rows({"a": 1.0, "b": 0.0, "c": 0.5, "x": None})
    other = rows({"a": 1.0, "b": 1.0, "c": 0.0, "d": 1.0, "x": 1.0})  # d and x have no base score: left out
    diff = evaluation.paired_difference(base, other)
    assert diff.n == 3 and diff.mean == pytest.approx((0 + 1 - 0.5) / 3)
    assert evaluation.wins_ties_losses(base, other) == {"wins": 1, "ties": 1, "losses": 1}


def test_report_files_hold_the_numbers_of_a_small_case(tmp_path):
    cats = {"a": ["format"], "b": ["format", "case"], "c": ["case"]}
    results = {"base": rows({"a": 0.0, "b": 0.0, "c": 1.0}), "tao": rows({"a": 1.0, "b": 1.0, "c": 1.0})}
    summary = summarize(results, cats)
    header = {"prompts": "items.jsonl", "items": 3, "scorers": ["rule:exact"], "max_new_tokens": 8, "base_model": "m"}
    write_report(tmp_path, summary, results, cats, header)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["models"]["base"]["mean"] == pytest.approx(1 / 3) and report["models"]["tao"]["mean"] == 1.0
    assert report["differences"]["tao"]["mean"] == pytest.approx(2 / 3) and report["differences"]["tao"]["n"] == 3
    assert report["wins"]["tao"] == {"wins": 2, "ties": 1, "losses": 0}
    assert report["categories"] == {"case": {"base": 0.5, "tao": 1.0}, "format": {"base": 0.0, "tao": 1.0}}
    md = (tmp_path / "report.md").read_text()
    assert "| tao | 1.000 [1.000, 1.000] | +0.667 [" in md and "| 2 / 1 / 0 |" in md
    assert "| format | 0.000 | 1.000 |" in md
    assert "- tao against base: +0.667 [+0.000, +1.000]; no difference shown" in md  # 3 items: it holds zero
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((tmp_path / "items-1.jsonl").read_text().splitlines()) == 3


def test_the_verdict_names_a_winner_only_when_the_interval_excludes_zero():
    from tao.commands.compare import verdicts

    def summary(low, high):
        return {"reference": "base", "differences": {"tao": {"mean": (low + high) / 2, "low": low, "high": high}}}

    assert verdicts(summary(0.01, 0.2)) == ["- tao beats base by +0.105 [+0.010, +0.200] (the interval excludes zero)."]
    assert "worse than base" in verdicts(summary(-0.2, -0.01))[0]
    assert "no difference shown" in verdicts(summary(-0.01, 0.2))[0]


def labeled(tmp_path):
    lines = [{"prompt": f"say the letter a {i}", "completion": "a a a a a a"} for i in range(6)]
    lines.append({"messages": [{"role": "user", "content": "and once more"}, {"role": "assistant", "content": "a a"}]})
    return write_jsonl(tmp_path / "labeled.jsonl", lines)


def test_sft_trains_the_lora_weights_and_records_its_budget(tiny_model, tmp_path):
    out = tmp_path / "sft"
    sets = ["--set", "sft.learning_rate=5e-3", "--set", "sft.batch_size=4", "--set", "sft.epochs=2"]
    result = cli("sft", "--data", labeled(tmp_path), "--out", out, "--model", tiny_model, "--quiet", *sets)
    assert result.exit_code == 0, result.output
    weights = load_file(out / "adapter" / "adapter_model.safetensors")
    assert any("lora_B" in k and v.abs().max() > 0 for k, v in weights.items())  # B starts at zero
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "sft" and manifest["data"]["examples"] == 7 and manifest["adapter_shape"]["r"] == 16
    budget = manifest["budget"]
    assert budget["optimizer_steps"] == 4 and budget["epochs"] == 2 and budget["answer_tokens_trained"] > 0
    assert budget["last_loss"] < budget["first_loss"]
    again = cli("sft", "--data", labeled(tmp_path), "--out", out, "--model", tiny_model)
    assert again.exit_code == 0 and "nothing to do" in again.output


@pytest.mark.parametrize(
    ("line", "where"),
    [
        ({"prompt": "hi"}, ':1: no answer: expected "completion"'),
        ({"prompt": "hi", "completion": ""}, ":1: completion: expected a non-empty string"),
        ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": 3}]}, ":1: messages[1]"),
    ],
)
def test_bad_labeled_lines_are_one_line_errors(tmp_path, line, where):
    data = write_jsonl(tmp_path / "bad.jsonl", [line])
    result = cli("sft", "--data", data, "--out", tmp_path / "out")
    assert result.exit_code == 2 and where in result.output and not (tmp_path / "out").exists()


@pytest.fixture
def adapter(tiny_model, tmp_path):
    """An adapter that answers differently from the base: fresh LoRA, B drawn at random."""
    import torch

    from tao.core.config import Config
    from tao.core.model import BaseModel, Policy

    policy = Policy(BaseModel("tiny", tiny_model, "x"), Config().model, Config().lora)
    torch.manual_seed(0)
    with policy.attached(None, trainable=True) as model:
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.data.normal_(0, 0.5)
        model.save_pretrained(tmp_path / "adapter")
    return tmp_path / "adapter"


def test_eval_scores_an_adapter_and_the_base_differently_when_they_answer_differently(tiny_model, adapter, tmp_path):
    items = write_jsonl(tmp_path / "items.jsonl", [{"prompt": f"question {i}", "category": "q"} for i in range(4)])
    common = ["--prompts", items, "--base", tiny_model, "--set", "rollout.max_new_tokens=6", "--quiet"]
    first = cli("eval", "--model", "base", "--by", "rule:finished", "--out", tmp_path / "e0", *common)
    assert first.exit_code == 0, first.output
    answers = [json.loads(x)["text"] for x in (tmp_path / "e0/items-0.jsonl").read_text().splitlines()]
    # The base's own answers become the references: the base scores 1 on rule:exact, the adapter less.
    ref = write_jsonl(
        tmp_path / "ref.jsonl", [{"prompt": f"question {i}", "reference": a} for i, a in enumerate(answers)]
    )
    common[1] = ref
    result = cli("compare", "base", adapter, "--by", "rule:exact", "--out", tmp_path / "cmp", *common)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "cmp/report.json").read_text())
    assert report["models"]["base"]["mean"] == 1.0
    assert report["models"][str(adapter)]["mean"] < 1.0 and report["differences"][str(adapter)]["mean"] < 0
    assert result.output.splitlines()[0].startswith("base: mean 1.000 [1.000, 1.000] (n=4)")


def test_unknown_model_specs_are_refused(tmp_path):
    items = write_jsonl(tmp_path / "items.jsonl", [{"prompt": "q"}])
    result = cli("compare", "base", tmp_path, "--prompts", items, "--by", "rule:exact")
    assert result.exit_code == 2 and "not 'base', a run, round or SFT directory" in result.output

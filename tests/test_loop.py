"""`tao run` end to end on the tiny model: artefacts, lineage, resume, the flywheel."""

import hashlib
import json
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

import tao.loop
from tao.cli import main
from tao.core.storage import locked, read_jsonl
from tao.run.paths import RunPaths
from tests.conftest import TINY, build_tiny_model, cli, write_jsonl


def tao_run(prompts, model, run_dir, *extra, catch=False):
    """``tao run`` with the TINY settings; ``catch`` only for tests that expect the process to be stopped."""
    args = ["run", "--prompts", prompts, "--model", model, "--run-dir", run_dir, "--quiet"]
    args += [a for item in TINY for a in ("--set", item)] + list(extra)
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=catch)


@pytest.fixture(scope="module")
def finished_run(tiny_model, tmp_path_factory):
    """One finished round, shared read-only by the tests that only inspect it."""
    root = tmp_path_factory.mktemp("finished")
    prompts = write_jsonl(
        root / "logs.jsonl", [{"prompt": f"say something {i}", "id": f"p{i}", "team": "t"} for i in range(12)]
    )
    result = tao_run(prompts, tiny_model, root / "run")
    assert result.exit_code == 0, result.output
    return prompts, root / "run", result.output


def test_round_artefacts_and_lineage(finished_run, tiny_model):
    prompts, run_dir, output = finished_run
    rp = RunPaths(run_dir).round(1)
    rows = read_jsonl(rp.candidates)
    assert len(rows) == 4 * 4 and {
        len([r for r in rows if r["prompt_id"] == p]) for p in {r["prompt_id"] for r in rows}
    } == {4}
    assert all(isinstance(r["score"], float) and r["scores"] == {"tests.rewards:letter_a": r["score"]} for r in rows)
    assert (rp.adapter / "adapter_model.safetensors").is_file() and (rp.adapter / "adapter_config.json").is_file()
    assert len(read_jsonl(rp.eval)) == 3 and len(read_jsonl(RunPaths(run_dir).baseline_eval)) == 3
    m = json.loads(rp.manifest.read_text())
    assert m["base_model"]["path"] == str(tiny_model) and len(m["base_model"]["sha256"]) == 64
    assert m["prompts"] == {
        "file": str(prompts),
        "sha256": hashlib.sha256(prompts.read_bytes()).hexdigest(),
        "count": 12,
        "trained": 4,
        "held_out": 3,
    }
    assert m["scorers"] == ["tests.rewards:letter_a=1"] and m["parent"] is None
    assert m["version"] == "run/round-0001" and m["run_dir"] == str(run_dir.resolve())
    assert m["adapter"] == "round-0001/adapter" and m["adapter_shape"]["r"] == 16
    assert m["config"]["rollout"]["num_candidates"] == 4 and m["config"]["run"]["seed"] == 0 and m["seed"] == 1
    assert m["packages"]["trl"] and m["packages"]["peft"] and m["packages"]["torch"]
    metrics = json.loads(rp.metrics.read_text())
    assert set(metrics) == {"explore", "score", "update", "evaluate"}
    assert metrics["explore"]["seconds"] > 0 and metrics["update"]["seconds"] > 0 and metrics["update"]["steps"] >= 1
    assert (
        m["evaluation"]["prompts"] == 3
        and m["evaluation"]["difference"]["low"] <= m["evaluation"]["difference"]["high"]
    )
    assert {k: v for k, v in metrics["evaluate"].items() if k != "seconds"} == m["evaluation"]
    assert not rp.rollouts.exists() and not rp.adapter_tmp.exists() and not rp.trainer.exists()  # no leftovers
    report = (run_dir / "report.md").read_text()
    assert "| 1 | 12 | 4 |" in report and "12 unique prompts (0 exact duplicates dropped, 0 skipped" in report
    assert m["timings"] == {stage: figures["seconds"] for stage, figures in metrics.items()}
    assert output.startswith("round 1: 4 prompts x 4 candidates")
    held = set(held_out_ids(run_dir))
    trained = {p["id"] for p in json.loads(rp.plan.read_text())["prompts"]}
    assert len(held) == 3 and not held & trained  # held-out prompts are never trained on


def held_out_ids(run_dir: Path) -> list[str]:
    with closing(sqlite3.connect(RunPaths(run_dir).pool)) as db:
        return [i for (i,) in db.execute("SELECT id FROM sides WHERE held = 1 ORDER BY seq")]


def test_a_run_made_before_the_pool_keeps_its_split(finished_run, tiny_model, tmp_path):
    prompts, run_dir, _ = finished_run
    run_dir = shutil.copytree(run_dir, tmp_path / "run")
    prompts = shutil.copy(prompts, tmp_path / "logs.jsonl")
    ids = [json.loads(line)["id"] for line in Path(prompts).read_text().splitlines()]
    RunPaths(run_dir).pool.unlink()
    (run_dir / "split.json").write_text(json.dumps({"seen": ids, "holdout": ids[-2:]}))  # not the seeded choice
    with open(prompts, "a") as fh:
        fh.write(json.dumps({"prompt": "one more question", "id": "late"}) + "\n")
    result = tao_run(prompts, tiny_model, run_dir)
    assert result.exit_code == 0, result.output
    assert held_out_ids(run_dir)[:2] == ids[-2:]
    assert not {p["id"] for p in json.loads(RunPaths(run_dir).round(2).plan.read_text())["prompts"]} & set(ids[-2:])


def test_adapter_reloads_with_peft_and_answers_as_in_the_run(finished_run, tiny_model):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, run_dir, _ = finished_run
    rp = RunPaths(run_dir).round(1)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), rp.adapter).eval()
    assert any(p.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)  # it was trained
    plan = json.loads(rp.plan.read_text())
    texts = {}
    for item in plan["eval_prompts"]:
        ids = tokenizer.apply_chat_template(
            item["messages"], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.no_grad():
            out = model.generate(
                **ids,
                do_sample=False,
                max_new_tokens=8,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        texts[item["id"]] = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert texts == {r["prompt_id"]: r["text"] for r in read_jsonl(rp.eval)}


def test_interrupted_stage_resumes_without_redoing_finished_ones(tiny_model, tmp_path, prompts_file, monkeypatch):
    calls = {"explore": 0, "score": 0, "update": 0, "evaluate": 0}
    real = {name: getattr(tao.loop, name) for name in calls}

    def counting(name):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return real[name](*args, **kwargs)

        return wrapped

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as if the process were stopped in the middle of the update

    for name in calls:
        monkeypatch.setattr(tao.loop, name, counting(name))
    monkeypatch.setattr(tao.loop, "update", killed)
    result = tao_run(prompts_file, tiny_model, tmp_path / "run", catch=True)
    assert result.exit_code == 130 and "run the same command again to resume" in result.output
    rp = RunPaths(tmp_path / "run").round(1)
    assert rp.stage("explore").is_file() and rp.stage("score").is_file() and not rp.stage("update").is_file()
    candidates = rp.candidates.read_bytes()

    monkeypatch.setattr(tao.loop, "update", counting("update"))
    result = tao_run(prompts_file, tiny_model, tmp_path / "run", "--set", "lora.rank=4")
    assert result.exit_code == 2 and "started with other model/lora settings" in result.output
    rp.adapter_tmp.mkdir()  # as if killed while saving the adapter
    (rp.adapter_tmp / "adapter_model.safetensors").write_bytes(b"half written")
    result = tao_run(prompts_file, tiny_model, tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert calls == {
        "explore": 1,
        "score": 1,
        "update": 1,
        "evaluate": 1,
    }  # explore and score were not redone
    assert rp.candidates.read_bytes() == candidates and rp.manifest.is_file()
    assert not rp.adapter_tmp.exists() and (rp.adapter / "adapter_model.safetensors").stat().st_size > 1000

    loads = []
    monkeypatch.setattr("tao.core.model.load_base", lambda *a, **k: loads.append(a))
    result = tao_run(prompts_file, tiny_model, tmp_path / "run")
    assert result.exit_code == 0 and "nothing to do" in result.output
    assert calls == {"explore": 1, "score": 1, "update": 1, "evaluate": 1} and loads == []  # no work at all


def test_appended_prompts_add_a_round_on_top_of_the_last_adapter(finished_run, tiny_model, tmp_path):
    prompts, run_dir, _ = finished_run
    run_dir = shutil.copytree(run_dir, tmp_path / "run")
    grown = shutil.copy(prompts, tmp_path / "logs.jsonl")
    held_before = held_out_ids(run_dir)
    with open(grown, "a") as fh:
        fh.writelines(json.dumps({"prompt": f"a new question {i}", "id": f"new{i}"}) + "\n" for i in range(4))
    result = tao_run(grown, tiny_model, run_dir)
    assert result.exit_code == 0, result.output
    r2 = RunPaths(run_dir).round(2)
    plan = json.loads(r2.plan.read_text())
    assert plan["parent_round"] == 1 and json.loads(r2.manifest.read_text())["parent"] == "run/round-0001"
    assert held_out_ids(run_dir)[: len(held_before)] == held_before
    round1 = {p["id"] for p in json.loads(RunPaths(run_dir).round(1).plan.read_text())["prompts"]}
    round2 = {p["id"] for p in plan["prompts"]}
    assert len(round2) == 4 and not round1 & round2  # prompts never trained on come first
    assert not (RunPaths(run_dir).round(3)).dir.exists()


def test_a_round_directory_left_without_a_plan_is_planned_again(finished_run, tiny_model, tmp_path):
    """Killed between writing the next round's config.yaml and its plan.json: the next run plans it anew."""
    prompts, run_dir, _ = finished_run
    run_dir = shutil.copytree(run_dir, tmp_path / "run")
    grown = shutil.copy(prompts, tmp_path / "logs.jsonl")
    with open(grown, "a") as fh:
        fh.write(json.dumps({"prompt": "one more", "id": "extra"}) + "\n")
    half = RunPaths(run_dir).round(2)
    half.dir.mkdir()
    half.config.write_text("stale: true\n")  # not even a valid config: it must not be read
    result = tao_run(grown, tiny_model, run_dir)
    assert result.exit_code == 0, result.output
    assert half.manifest.is_file() and json.loads(half.plan.read_text())["round"] == 2


def test_two_rounds_chain_and_a_different_base_is_refused(tiny_model, tmp_path, prompts_file):
    from tests.conftest import build_tiny_model

    result = tao_run(prompts_file, tiny_model, tmp_path / "run", "--rounds", "2")
    assert result.exit_code == 0, result.output
    r1, r2 = RunPaths(tmp_path / "run").rounds()
    assert json.loads(r2.plan.read_text())["parent_round"] == r1.index == 1
    # round 2 continued round 1's optimizer (saved beside its adapter), not a fresh one
    updates = [json.loads(r.metrics.read_text())["update"] for r in (r1, r2)]
    assert [u["optimizer"] for u in updates] == ["fresh", "carried"]
    assert (r1.adapter / "optimizer.safetensors").is_file() and (r2.adapter / "optimizer.safetensors").is_file()
    assert result.output.count("\nround ") + result.output.startswith("round ") == 2
    # the time budget reads each round's exploring, the slowest optimizer step, the largest trained share, and the
    # last round's evaluation time
    from tao.run.budget import RoundCost, round_cost

    sizes = [len(json.loads(r.plan.read_text())["prompts"]) for r in (r1, r2)]
    slow = {"explore": 300.0, "score": 2.0, "update": 100.0, "evaluate": 9.0}
    fast = {"explore": 4.0, "score": 0.0, "update": 4.0, "evaluate": 5.0}
    _pretend_round_took(tmp_path / "run", slow, 1, steps=4, groups_trained=2)
    _pretend_round_took(tmp_path / "run", fast, 2, steps=1, groups_trained=1)
    share = max(2 / sizes[0], 1 / sizes[1])
    expected = RoundCost(((sizes[0], 302.0), (sizes[1], 4.0)), step_seconds=25.0, trained_share=share, fixed=5.0)
    assert round_cost(RunPaths(tmp_path / "run")) == expected
    other = build_tiny_model(tmp_path / "other", seed=1)
    result = tao_run(prompts_file, other, tmp_path / "run", "--rounds", "3")
    assert result.exit_code == 2 and "another base model" in result.output


def test_the_smoke_config_runs_a_round(tiny_model, tmp_path, prompts_file):
    smoke = Path(__file__).resolve().parents[1] / "configs/smoke.yaml"
    result = cli(
        "run",
        "--prompts",
        prompts_file,
        "--model",
        tiny_model,
        "--run-dir",
        tmp_path / "run",
        "--config",
        smoke,
        "--reward",
        "tests.rewards:letter_a",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "run/round-0001/manifest.json").read_text())
    assert manifest["config"]["rollout"]["max_new_tokens"] == 24 and manifest["prompts"]["trained"] == 4


def test_a_run_directory_in_use_is_refused(tiny_model, tmp_path, prompts_file):
    with locked(tmp_path / "run" / ".lock"):
        result = tao_run(prompts_file, tiny_model, tmp_path / "run")
    assert result.exit_code == 2 and "in use by pid" in result.output


def test_qlora_round_with_a_4bit_base(tiny_model, tmp_path, prompts_file):
    result = tao_run(
        prompts_file,
        tiny_model,
        tmp_path / "run",
        "--set",
        "model.quantize=nf4",
        "--set",
        "lora.target_modules=q_proj,v_proj",
    )
    assert result.exit_code == 0, result.output
    rp = RunPaths(tmp_path / "run").round(1)
    config = json.loads((rp.adapter / "adapter_config.json").read_text())
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    assert json.loads(rp.manifest.read_text())["config"]["model"]["quantize"] == "nf4"
    assert json.loads(rp.metrics.read_text())["update"]["steps"] >= 1


def test_a_round_stops_when_most_candidates_have_no_score(tiny_model, prompts_file, tmp_path):
    result = tao_run(prompts_file, tiny_model, tmp_path / "run", "--set", "reward.scorers=[tests.rewards:mostly_nan]")
    assert result.exit_code == 2 and "candidates got no score (None, NaN or inf" in result.output
    assert "reward.scorers" in result.output and "Traceback" not in result.output
    rp = RunPaths(tmp_path / "run").round(1)
    assert rp.stage("explore").is_file() and not rp.stage("score").exists() and not rp.candidates.exists()


def _pretend_round_took(run_dir: Path, seconds: dict[str, float], index: int = 1, **update: int) -> None:
    """Rewrite a round's stage records as if its stages had taken ``seconds`` and its update had the ``update``
    figures (steps, groups_trained): the budget reads only these."""
    rp = RunPaths(run_dir).round(index)
    for stage, value in seconds.items():
        record = json.loads(rp.stage(stage).read_text())
        extra = update if stage == "update" else {}
        rp.stage(stage).write_text(json.dumps({**record, "seconds": value, **extra}))


def test_minutes_shrinks_the_last_round_to_what_fits_and_stops_when_nothing_does(finished_run, tiny_model, tmp_path):
    from tao.core.config_file import load_config, replace
    from tao.run import budget

    prompts, run_dir, _ = finished_run
    # round 1: 4 prompts, as if explored in 300 s, trained in 2 steps of 50 s (all 4 groups), evaluated in 20 s.
    # A round of p prompts: 300 * (p / 4) ** 0.7 + 50 * ceil(p / 2) + 20 seconds, x1.25
    took = {"explore": 300.0, "score": 0.0, "update": 100.0, "evaluate": 20.0}
    config = load_config(None, tuple(TINY))
    assert config.update.prompts_per_step == 2
    sized = shutil.copytree(run_dir, tmp_path / "sized")
    _pretend_round_took(sized, took, steps=2, groups_trained=4)
    for name, minutes, elapsed, per_round, expected in [
        ("no budget", 0.0, 0.0, 4, 4),
        ("room for all", 60.0, 0.0, 4, 4),
        ("room for 2", 6.0, 0.0, 4, 2),  # 2 prompts: 1.25 * (184.7 + 50 + 20) = 318 s; 3: 456 s
        ("not linear: room for 1, below one step of 2", 5.0, 0.0, 4, None),  # 1: 230 s, 2: 318 s
        ("all prompts wanted (0): what fits", 60.0, 0.0, 0, 46),  # 46: 3574 s, 47: 3632 s
        ("all prompts wanted (0), no budget", 0.0, 0.0, 0, 0),
    ]:
        changed = replace(config, run={"minutes": minutes}, data={"prompts_per_round": per_round})
        assert budget.next_round_prompts(changed, RunPaths(sized), elapsed) == expected, name
    assert budget.next_round_prompts(replace(config, run={"minutes": 5.0}), RunPaths(tmp_path / "none"), 0) == 4

    shrunk = shutil.copytree(run_dir, tmp_path / "shrunk")
    _pretend_round_took(shrunk, took, steps=2, groups_trained=4)
    result = tao_run(prompts, tiny_model, shrunk, "--rounds", "2", "--minutes", "6")
    assert result.exit_code == 0, result.output
    r2 = RunPaths(shrunk).round(2)
    assert r2.manifest.is_file() and len(json.loads(r2.plan.read_text())["prompts"]) == 2
    assert load_config(r2.config, ()).data.prompts_per_round == 2  # the round's config says what it ran with

    stopped = shutil.copytree(run_dir, tmp_path / "stopped")
    _pretend_round_took(stopped, took, steps=2, groups_trained=4)
    result = tao_run(prompts, tiny_model, stopped, "--rounds", "2", "--minutes", "1")
    assert result.exit_code == 0, result.output
    assert "stopped: no round fits in what is left of run.minutes (1)" in result.output
    assert not RunPaths(stopped).round(2).dir.exists()


def test_an_rft_round_reports_the_yardstick_against_the_base(tmp_path):
    """update.method=rft fine-tunes on the best answers; eval.check=[ifeval] scores the held-out answers by the
    items' IFEval labels (which the reward never reads) and states the difference from the base."""
    rows = [  # even items ask for no placeholder (any answer passes), odd ones for a thousand (none does)
        {
            "id": f"p{i}",
            "prompt": f"say something {i}",
            "instruction_id_list": ["detectable_content:number_placeholders"],
            "kwargs": [{"num_placeholders": 0 if i % 2 == 0 else 1000}],
        }
        for i in range(24)
    ]
    prompts = write_jsonl(tmp_path / "labelled.jsonl", rows)
    lively = build_tiny_model(tmp_path / "model", initializer_range=0.2)  # answers that are not blank
    result = tao_run(
        prompts,
        lively,
        tmp_path / "run",
        "--set",
        "update.method=rft",
        "--set",
        "eval.check=[ifeval]",
        "--set",
        "eval.max_prompts=6",
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(RunPaths(tmp_path / "run").round(1).metrics.read_text())
    assert metrics["update"]["method"] == "rft" and metrics["update"]["steps"] >= 1
    check = metrics["evaluate"]["check"]
    answers = read_jsonl(RunPaths(tmp_path / "run").round(1).eval)
    passing = [bool(a["text"].strip()) and int(a["prompt_id"][1:]) % 2 == 0 for a in answers]
    assert check["scorers"] == ["ifeval=1"] and check["mean"] == sum(passing) / len(answers)
    assert 0 < sum(passing) < len(answers)
    assert check["difference"]["n"] == len(answers) and "check ifeval=1" in result.output
    # The run directory as the items: its held-out prompts, with their labels, none of which it trained on.
    out = tmp_path / "compare"
    done = cli(
        "compare",
        "base",
        tmp_path / "run",
        "--prompts",
        tmp_path / "run",
        "--by",
        "ifeval",
        "--base",
        lively,
        "--out",
        out,
        "--set",
        "rollout.max_new_tokens=8",
        "--quiet",
    )
    assert done.exit_code == 0, done.output
    items = read_jsonl(out / "items-1.jsonl")
    trained = {p["id"] for p in json.loads(RunPaths(tmp_path / "run").round(1).plan.read_text())["prompts"]}
    assert len(items) == 6 and not trained & {r["prompt_id"] for r in items}
    assert [r["score"] for r in items if r["prompt_id"] in {a["prompt_id"] for a in answers}] == [
        float(p) for p in passing
    ]

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from tao.cli import main
from tests.conftest import cli


def test_help_imports_no_heavy_library():
    code = (
        "import sys; from tao.cli import main; "
        "print(sorted({'torch', 'transformers', 'trl', 'peft'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_lists_the_run_options():
    result = CliRunner().invoke(main, ["run", "--help"])
    assert result.exit_code == 0
    for option in (
        "--prompts",
        "--model",
        "--reward",
        "--rounds",
        "--run-dir",
        "--config",
        "--set",
        "--quiet",
    ):
        assert option in result.output


def test_bad_override_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(main, ["run", "--prompts", "x.jsonl", "--set", "rollout.temprature=1"])
    assert result.exit_code == 2 and result.output == "tao: error: --set: unknown key 'rollout.temprature'\n"


def test_unknown_model_dir_is_a_one_line_error(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--prompts",
            str(prompts),
            "--model",
            str(tmp_path / "missing"),
            "--run-dir",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 2 and "not a model directory" in result.output
    assert not (tmp_path / "run").exists()


def test_pickle_only_model_is_refused(tmp_path):
    model = tmp_path / "pickled"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "pytorch_model.bin").write_bytes(b"not really")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    result = CliRunner().invoke(main, ["run", "--prompts", str(prompts), "--model", str(model)])
    assert result.exit_code == 2 and "safetensors only" in result.output and "pytorch_model.bin" in result.output


def test_run_dir_that_is_a_file_is_a_one_line_error(tmp_path, tiny_model, prompts_file):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    result = cli("run", "--prompts", prompts_file, "--model", tiny_model, "--run-dir", blocker / "run")
    assert result.exit_code == 2 and result.output.startswith("tao: error: ") and result.output.count("\n") == 1


@pytest.mark.parametrize(
    "setting, problem",
    [
        ("data.max_prompt_tokens=3", "no training prompts"),
        ("lora.target_modules=q_proj,qkv", "no module 'qkv'; its linear modules are"),
    ],
)
def test_settings_that_cannot_work_are_refused_before_anything_is_written(
    tmp_path, tiny_model, prompts_file, setting, problem
):
    run_dir = tmp_path / "run"
    result = cli("run", "--prompts", prompts_file, "--model", tiny_model, "--run-dir", run_dir, "--set", setting)
    assert result.exit_code == 2 and problem in result.output
    assert not run_dir.exists()


def test_remote_code_model_is_refused_without_the_flag(tmp_path, tiny_model):
    model = tmp_path / "custom"
    shutil.copytree(tiny_model, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModelForCausalLM": "x.Model"}}))
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    result = cli("run", "--prompts", prompts, "--model", model, "--run-dir", tmp_path / "run")
    assert result.exit_code == 2 and "ships its own Python code" in result.output
    assert "model.trust_remote_code=true" in result.output and str(model / "config.json") in result.output
    assert not (tmp_path / "run").exists()


def test_every_file_of_the_base_counts_in_its_hash(tiny_model, tmp_path):
    """A changed tokenizer file (here the merges, a vocabulary or a sentencepiece model elsewhere) is another base."""
    import shutil

    from tao.core.model import content_hash

    model = shutil.copytree(tiny_model, tmp_path / "model")
    before, legacy = content_hash(model), content_hash(model, legacy=True)
    (model / "merges.txt").write_text("a b\n")  # a file the old hash (weights, json, jinja) did not read
    assert content_hash(model) != before and content_hash(model, legacy=True) == legacy
    (model / "modeling_custom.py").write_text("# code shipped with a model\n")
    assert content_hash(model) not in (before, content_hash(model, legacy=True))

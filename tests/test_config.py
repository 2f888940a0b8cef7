from pathlib import Path

import pytest
import yaml

from tao.core.config import Config
from tao.core.config_file import load_config, replace, to_dict
from tao.core.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def test_default_yaml_is_the_full_reference(tmp_path):
    """configs/default.yaml holds every field, with the dataclass default, and a comment above each key."""
    text = (ROOT / "configs/default.yaml").read_text()
    assert yaml.safe_load(text) == to_dict(Config())
    assert load_config(ROOT / "configs/default.yaml") == Config()
    lines = text.splitlines()

    def is_key(line: str) -> bool:  # a key of a section, e.g. "  rank: 16"
        return line.startswith("  ") and not line.startswith("   ") and not line.strip().startswith("#")

    for number, line in enumerate(lines):
        if is_key(line):
            above = number - 1
            while is_key(lines[above]) or lines[above].startswith("    "):  # keys documented as a group, list items
                above -= 1
            assert lines[above].strip().startswith("#"), f"default.yaml:{number + 1}: {line.strip()} is undocumented"


def test_precedence_defaults_file_then_set(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("rollout:\n  num_candidates: 6\n  temperature: 0.5\nrun:\n  rounds: 3\n")
    cfg = load_config(cfg_file, ["rollout.temperature=1.2", "run.rounds=2", "run.rounds=4"])
    assert cfg.rollout.num_candidates == 6  # file over default
    assert cfg.rollout.temperature == 1.2  # --set over file
    assert cfg.run.rounds == 4  # later --set wins
    assert cfg.rollout.max_new_tokens == Config().rollout.max_new_tokens  # untouched default


def test_smoke_config_loads_and_is_small():
    cfg = load_config(ROOT / "configs/smoke.yaml")
    assert cfg.rollout.max_new_tokens <= 32 and cfg.data.prompts_per_round <= 8 and cfg.run.rounds == 1


def test_numbers_written_like_1e_4_are_numbers():
    assert load_config(None, ["update.learning_rate=1e-4"]).update.learning_rate == pytest.approx(1e-4)


def test_list_override():
    cfg = load_config(None, ["reward.scorers=[rule:json, rule:length:50=0.5]"])
    assert cfg.reward.scorers == ("rule:json", "rule:length:50=0.5")


@pytest.mark.parametrize(
    "text, field, problem",
    [
        ("rollout:\n  temprature: 0.7\n", "rollout.temprature", "unknown key"),
        ("rolout:\n  temperature: 0.7\n", "rolout", "unknown key"),
        ("rollout:\n  num_candidates: many\n", "rollout.num_candidates", "expected an integer"),
        ("rollout:\n  num_candidates: 1\n", "rollout.num_candidates", "must be >= 2"),
        ("model:\n  trust_remote_code: 'yes'\n", "model.trust_remote_code", "expected true or false"),
        ("model:\n  quantize: int3\n", "model.quantize", "expected one of none, nf4"),
        ("model:\n  dtype: float16\n", "model.dtype", "expected one of auto, float32, bfloat16"),
        ("rollout: 3\n", "rollout", "must be a mapping"),
    ],
)
def test_file_errors_name_the_key(tmp_path, text, field, problem):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_config(path)
    assert err.value.field == field and problem in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize(
    "override, problem",
    [
        ("rollout.temprature=0.7", "unknown key 'rollout.temprature'"),
        ("rollout=3", "is a section"),
        ("data.holdout=1.5", "must be in [0, 1)"),
        ("update.learning_rate=fast", "expected a finite number"),
        ("update.learning_rate=.inf", "expected a finite number"),
        ("run.seed=-1", "must be in [0, 1000000)"),
        ("run.rounds", "expected section.key=value"),
        ("update.group_size=1", "must be 0 (all) or >= 2"),
        ("update.group_size=16", "must be <= rollout.num_candidates (8)"),
        ("rollout.tensor_parallel_size=0", "rollout.tensor_parallel_size: must be >= 1"),
        ("rollout.server_url=localhost:8000", "rollout.server_url: must start with http:// or https://"),
        ("rollout.engine=server", "expected one of auto, vllm, transformers, vllm-server"),
    ],
)
def test_set_errors_name_the_key(override, problem):
    with pytest.raises(InputError, match=problem.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        load_config(None, [override])


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("rollout:\n  temperature: 0.7\n  x: [1, 2\n")
    with pytest.raises(InputError) as err:
        load_config(path)
    assert err.value.line is not None and "invalid YAML" in str(err.value)


def test_replace_validates():
    cfg = replace(Config(), run={"rounds": 3})
    assert cfg.run.rounds == 3 and Config().run.rounds == 1
    with pytest.raises(InputError):
        replace(Config(), run={"rounds": 0})


def test_the_server_engine_and_tensor_parallelism_are_settings():
    config = load_config(
        None, ["rollout.engine=vllm-server", "rollout.server_url=http://gpu-box:8001", "rollout.tensor_parallel_size=4"]
    )
    assert config.rollout.engine == "vllm-server" and config.rollout.server_url == "http://gpu-box:8001"
    assert config.rollout.tensor_parallel_size == 4


def test_trl_fields_pass_through_as_a_mapping_and_gradient_checkpointing_reads_yaml_booleans(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("update:\n  gradient_checkpointing: on\n  trl:\n    max_grad_norm: 0.5\n")
    config = load_config(path, ["update.trl.use_liger_kernel=true"])
    assert config.update.gradient_checkpointing == "on"  # YAML reads `on` as true
    assert config.update.trl == {"max_grad_norm": 0.5, "use_liger_kernel": True}
    with pytest.raises(InputError, match=r"update\.trl\.x: expected a string, number or boolean"):
        load_config(None, ["update.trl.x=[1, 2]"])
    with pytest.raises(InputError, match="update.gradient_checkpointing: expected one of auto, on, off"):
        load_config(None, ["update.gradient_checkpointing=sometimes"])

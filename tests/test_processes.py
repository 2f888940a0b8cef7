"""`tao run` under `accelerate launch`: process 0 runs the loop, every process trains (tao/processes.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tao.core import processes
from tao.core.errors import InputError
from tao.run.paths import RunPaths
from tao.update.grpo import tensors_digest
from tests.conftest import TINY, write_jsonl

ROOT = Path(__file__).resolve().parents[1]


def launch(prompts: Path, tiny_model: Path, run_dir: Path) -> subprocess.CompletedProcess:
    """`accelerate launch --config_file configs/accelerate/cpu.yaml -m tao.cli run ...` (two processes, gloo)."""
    sets = [*TINY, "update.prompts_per_step=2", "eval.max_prompts=2", "run.threads=1"]
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        ROOT / "configs/accelerate/cpu.yaml",
    ]
    command += ["-m", "tao.cli", "run", "--prompts", prompts, "--model", tiny_model, "--run-dir", run_dir, "--quiet"]
    command += [x for s in sets for x in ("--set", s)]
    # CPU processes (gloo) even where a GPU is visible: otherwise process 1 would ask for a second GPU.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, env=env, cwd=prompts.parent, timeout=600
    )


def test_a_grpo_update_across_two_cpu_processes(tiny_model, tmp_path):
    prompts = write_jsonl(tmp_path / "logs.jsonl", [{"prompt": f"say something {i}", "id": f"p{i}"} for i in range(8)])
    run_dir = tmp_path / "run"
    done = launch(prompts, tiny_model, run_dir)
    assert done.returncode == 0, done.stderr[-3000:]

    rp = RunPaths(run_dir).round(1)
    update = json.loads(rp.stage("update").read_text())
    assert update["processes"] == 2
    per_process = update["sequences_per_process"]
    assert len(per_process) == 2 and all(n > 0 for n in per_process)  # both processes trained
    assert sum(per_process) >= update["sequences_trained"]
    assert len(set(update["adapter_sha256_per_process"])) == 1  # gradients were shared: the same weights

    from safetensors.torch import load_file

    saved = sorted(p.name for p in rp.adapter.iterdir())
    # one adapter, saved once, with the optimizer state the next round continues
    assert saved == ["README.md", "adapter_config.json", "adapter_model.safetensors", "optimizer.safetensors"]
    tensors = load_file(rp.adapter / "adapter_model.safetensors")
    assert tensors_digest(tensors) == update["adapter_sha256_per_process"][0]  # what the processes trained
    assert any(t.abs().sum() > 0 for k, t in tensors.items() if "lora_B" in k)  # LoRA B starts at zero: it moved
    assert rp.manifest.is_file() and not rp.adapter_tmp.exists() and not rp.trainer.exists()

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), rp.adapter)
    with torch.no_grad():
        assert model(torch.tensor([[1, 2, 3]])).logits.shape[-1] > 0  # it loads and runs


def test_bad_input_under_the_launcher_ends_every_process(tiny_model, tmp_path):
    """Process 0 stops on the bad line; the launcher then stops the process waiting for it (no hang)."""
    prompts = write_jsonl(tmp_path / "logs.jsonl", [{"prompt": "fine"}, {"prompt": 5}])
    done = launch(prompts, tiny_model, tmp_path / "run")
    assert done.returncode != 0
    assert f"tao: error: {prompts}:2: prompt: expected a string" in done.stdout + done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ACCELERATE_USE_FSDP": "true", "FSDP_OFFLOAD_PARAMS": "true"}, "fsdp_offload_params: false"),
        (
            {
                "ACCELERATE_USE_DEEPSPEED": "true",
                "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3",
                "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE": "cpu",
                "ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL": "true",
            },
            "offload_param_device: none",
        ),
    ],
)
def test_a_4bit_base_with_parameter_offload_is_refused(monkeypatch, env, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(InputError, match=message):
        processes.check_launcher("nf4")
    processes.check_launcher("none")  # a full-precision base can be offloaded


def test_zero3_without_16bit_gathering_and_generation_from_a_sharded_base_are_refused(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    with pytest.raises(InputError, match="zero3_save_16bit_model: true"):
        processes.check_launcher("none")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL", "true")
    processes.check_launcher("none")
    with pytest.raises(InputError, match="rollout.engine=vllm or vllm-server"):
        processes.check_engine("transformers")
    processes.check_engine("vllm-server")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    processes.check_engine("transformers")  # ZeRO-2: every process holds the whole base


def test_4bit_weights_are_stored_for_sharding_under_fsdp_and_zero3(monkeypatch):
    import torch

    from tao.core.model import load_kwargs

    assert load_kwargs("nf4")["quantization_config"].bnb_4bit_quant_storage == torch.uint8
    assert "device_map" in load_kwargs("nf4")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    assert processes.sharded() is None  # ZeRO-2 shards no weights
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    kwargs = load_kwargs("nf4")
    assert kwargs["quantization_config"].bnb_4bit_quant_storage == kwargs["dtype"] and "device_map" not in kwargs


@pytest.mark.parametrize("name", ["cpu", "ddp", "zero2", "zero3", "fsdp"])
def test_the_accelerate_configs_are_valid(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(ROOT / "configs" / "accelerate" / f"{name}.yaml"))
    expected = {"cpu": "MULTI_GPU", "ddp": "MULTI_GPU", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED", "fsdp": "FSDP"}
    assert str(config.distributed_type).split(".")[-1] == expected[name]
    assert config.mixed_precision == "no"  # tao chooses the training precision

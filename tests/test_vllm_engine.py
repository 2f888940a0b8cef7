"""The vLLM engine's GPU-side settings and failure handling, checked without vLLM or a GPU (default suite)."""

from __future__ import annotations

import sys
import types

import pytest
import torch

import rollouts.choice
from rollouts.choice import choose_engine
from rollouts.strategies import EXEMPLAR_ROOM
from rollouts.vllm_engine import VllmEngine, request_seed
from tao.core.config import Config
from tao.core.config_file import replace
from tao.core.console import Console
from tao.core.errors import InputError, ResourceError
from tao.core.model import BaseModel, load_tokenizer
from tests.conftest import cli


def engine(tiny_model, cuda=False, **sections):
    base = BaseModel("tiny", tiny_model, "x")
    generator = VllmEngine(base, load_tokenizer(base, Config().model), replace(Config(), **sections), Console(True))
    generator._cuda = lambda: cuda
    return generator


def test_cpu_engine_arguments(tiny_model, monkeypatch):
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    args = engine(tiny_model, lora={"rank": 12}, rollout={"batch_size": 24}).engine_args()
    assert args["dtype"] == "float32" and args["enforce_eager"] and not args["enable_sleep_mode"]
    assert args["max_lora_rank"] == 16 and args["max_num_seqs"] == 24  # the smallest rank vLLM takes >= 12
    assert args["max_model_len"] == 1024  # more wanted, capped by the model's max_position_embeddings
    assert args["logprobs_mode"] == "processed_logprobs" and "quantization" not in args
    assert args["tensor_parallel_size"] == 1
    assert "kv_cache_memory_bytes" not in args
    import os

    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "2"


def test_vllm_computes_in_the_dtype_the_update_trains_in(tiny_model):
    assert engine(tiny_model, model={"dtype": "bfloat16"}).engine_args()["dtype"] == "bfloat16"
    assert engine(tiny_model, cuda=True, model={"dtype": "float32"}).engine_args()["dtype"] == "float32"


def test_gpu_engine_arguments(tiny_model):
    args = engine(
        tiny_model,
        cuda=True,
        model={"quantize": "nf4"},
        data={"max_prompt_tokens": 256},
        rollout={"kv_cache_gib": 3, "gpu_memory_utilization": 0.5},
    ).engine_args()
    assert args["dtype"] == "bfloat16" and not args["enforce_eager"] and args["enable_sleep_mode"]
    assert args["quantization"] == "bitsandbytes"  # the same NF4 base the update trains on
    assert args["kv_cache_memory_bytes"] == 3 * 2**30 and args["gpu_memory_utilization"] == 0.5
    assert args["max_model_len"] == 256 + 128 + EXEMPLAR_ROOM  # prompt, exemplar turns (more than refine's), answer
    long = engine(tiny_model, cuda=True, data={"max_prompt_tokens": 64}, rollout={"max_new_tokens": 400})
    assert long.engine_args()["max_model_len"] == 64 + 2 * 400 + 128  # prompt, a draft and its revision (refine)


def test_tensor_parallel_size_reaches_vllms_constructor(tiny_model, monkeypatch):
    built = {}
    fake_vllm = types.ModuleType("vllm")
    fake_vllm.LLM = lambda **kwargs: built.update(kwargs) or "the engine"
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm)
    gen = engine(tiny_model, cuda=True, rollout={"tensor_parallel_size": 2})
    assert gen._engine() == "the engine"
    assert built["tensor_parallel_size"] == 2 and built["model"] == str(tiny_model)


@pytest.mark.parametrize("asked", ["vllm", "auto"])
def test_more_tensor_parallel_gpus_than_there_are_is_refused(asked, monkeypatch):
    monkeypatch.setattr(rollouts.choice, "gpu_count", lambda: 2)
    monkeypatch.setattr(rollouts.choice, "vllm_problem", lambda quantize, cuda: None)
    config = replace(Config(), rollout={"engine": asked, "tensor_parallel_size": 4})
    with pytest.raises(InputError) as caught:
        choose_engine(config, cuda=True)
    assert str(caught.value) == "rollout.tensor_parallel_size: 4 GPUs asked for tensor parallelism, 2 CUDA GPU(s) here"
    assert caught.value.field == "rollout.tensor_parallel_size"
    assert choose_engine(replace(config, rollout={"tensor_parallel_size": 2}), cuda=True).name == "vllm"
    assert choose_engine(replace(config, rollout={"engine": "transformers"}), cuda=True).name == "transformers"


@pytest.mark.skipif(torch.cuda.device_count() >= 2, reason="this machine has the GPUs")
def test_tensor_parallelism_without_the_gpus_stops_a_run_before_any_work(tiny_model, prompts_file, tmp_path):
    run_dir = tmp_path / "run"
    settings = ["rollout.engine=vllm", "rollout.tensor_parallel_size=2"]
    result = cli(
        "run",
        "--prompts",
        prompts_file,
        "--model",
        tiny_model,
        "--run-dir",
        run_dir,
        *(x for s in settings for x in ("--set", s)),
    )
    assert result.exit_code == 2
    found = torch.cuda.device_count()
    assert result.output == (
        f"tao: error: rollout.tensor_parallel_size: 2 GPUs asked for tensor parallelism, {found} CUDA GPU(s) here\n"
    )
    assert not run_dir.exists()


def test_a_rank_vllm_cannot_serve_is_refused(tiny_model):
    with pytest.raises(InputError, match="lora.rank: vLLM serves LoRA ranks up to 512"):
        engine(tiny_model, lora={"rank": 600}).engine_args()


class FakeLLM:
    def __init__(self):
        self.calls = []

    def sleep(self, level):
        self.calls.append(("sleep", level))

    def wake_up(self):
        self.calls.append(("wake_up",))


def test_on_a_gpu_the_engine_sleeps_through_the_update_and_wakes_to_generate(tiny_model):
    gen = engine(tiny_model, cuda=True)
    gen._llm = fake = FakeLLM()
    gen.release()
    gen.release()  # already asleep: nothing more
    assert gen._engine() is fake
    assert fake.calls == [("sleep", 1), ("wake_up",)]
    cpu = engine(tiny_model, cuda=False)
    cpu._llm = fake_cpu = FakeLLM()
    cpu.release()
    assert fake_cpu.calls == []  # no sleep mode on CPUs


@pytest.mark.parametrize(
    "failure",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        ValueError("No available memory for the cache blocks. Try increasing `gpu_memory_utilization`"),
        ValueError("To serve at least one request with max seq len (4096), 2.0 GiB KV cache is needed"),
    ],
)
def test_out_of_memory_becomes_one_line_naming_the_settings(tiny_model, failure):
    def boom():
        raise failure

    with pytest.raises(ResourceError) as caught:
        engine(tiny_model)._call(boom)
    assert "rollout.gpu_memory_utilization" in str(caught.value) and "\n" not in str(caught.value)


def test_other_failures_are_not_disguised(tiny_model):
    def boom():
        raise ValueError("head size 16 is not supported")

    with pytest.raises(ValueError, match="head size"):
        engine(tiny_model)._call(boom)


def test_the_cli_prints_a_resource_error_as_one_line_with_exit_1(tiny_model, prompts_file, tmp_path, monkeypatch):
    import rollouts.transformers_engine as te

    def oom(self, model, asks):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(te.TransformersEngine, "_stream", oom)
    result = cli("run", "--prompts", prompts_file, "--model", tiny_model, "--run-dir", tmp_path / "run", "--quiet")
    assert result.exit_code == 1
    assert result.output == (
        "tao: error: out of memory while generating; lower rollout.batch_size or rollout.max_new_tokens\n"
    )


def test_request_seeds_depend_on_the_seed_and_the_prompt_only():
    assert request_seed(1, "a") == request_seed(1, "a")
    assert len({request_seed(1, "a"), request_seed(2, "a"), request_seed(1, "b")}) == 3
    assert 0 <= request_seed(999_999, "x") < 2**31

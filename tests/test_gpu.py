"""On a CUDA GPU (opt-in: ``-m gpu``; scripts/gpu_check.py runs them on a lent GPU machine): the base loads on the
GPU in bfloat16 or 4-bit NF4, a whole round trains there, and each stage records its peak GPU memory."""

import json

import pytest

from tao.core.config_file import load_config
from tao.core.console import Console
from tao.run.paths import RunPaths
from tests.conftest import TINY, cli

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("quantize", ["none", "nf4"])
def test_the_base_loads_on_the_gpu_in_bfloat16_or_4_bit(tiny_model, quantize):
    from tao.core.model import load_base, resolve_base

    config = load_config(None, [f"model.name={tiny_model}", f"model.quantize={quantize}"])
    model = load_base(resolve_base(config.model, Console(quiet=True)), config.model)
    q_proj = model.model.layers[0].self_attn.q_proj
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    if quantize == "nf4":
        assert type(q_proj).__name__ == "Linear4bit" and q_proj.compute_dtype == torch.bfloat16
    else:
        assert q_proj.weight.dtype == torch.bfloat16


@pytest.mark.parametrize("quantize", ["none", "nf4"])
def test_a_round_trains_on_the_gpu_and_records_its_peak_memory(tiny_model, prompts_file, tmp_path, quantize):
    from safetensors.torch import load_file

    sets = [*TINY, f"model.quantize={quantize}", "model.dtype=auto"]  # bfloat16, as a GPU run would
    args = ["run", "--prompts", prompts_file, "--model", tiny_model, "--run-dir", tmp_path / "run", "--quiet"]
    result = cli(*args, *[a for s in sets for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    rp = RunPaths(tmp_path / "run").round(1)
    stages = {name: json.loads(rp.stage(name).read_text()) for name in ("explore", "update", "evaluate")}
    assert stages["update"]["steps"] >= 1
    assert all(0 < s["peak_gpu_gib"] < 2 for s in stages.values()), stages  # a tiny model: well under 2 GiB
    weights = load_file(rp.adapter / "adapter_model.safetensors")
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in weights.items())  # B starts at zero

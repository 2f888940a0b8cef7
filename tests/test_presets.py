"""The presets: large-model ones (configs/llama-*-qlora.yaml) and the memory estimate each was sized for; the
small-model one (configs/small-model-checker.yaml) and the benchmark setting it was measured as."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from tao.core.config import Config
from tao.core.config_file import load_config, replace

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("estimate_memory", ROOT / "scripts" / "estimate_memory.py")
em = sys.modules["estimate_memory"] = importlib.util.module_from_spec(_spec)  # dataclasses look their module up
_spec.loader.exec_module(em)

PRESETS = sorted(em.PRESETS)
LLAMA_8B, LLAMA_70B = em.ARCHS["meta-llama/Llama-3.1-8B-Instruct"], em.ARCHS["meta-llama/Llama-3.3-70B-Instruct"]


def preset(name: str) -> tuple[Config, str]:
    path = ROOT / em.PRESETS[name]
    return load_config(path), path.read_text()


def header(text: str) -> list[str]:
    """The comment block at the top of a YAML file, without the '#'."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return lines


def numbers(text: str) -> list[str]:
    return re.findall(r"\d+\.\d+", text)


def test_every_preset_is_listed_and_loads():
    listed = {Path(p).name for p in em.PRESETS.values()}
    assert {p.name for p in (ROOT / "configs").glob("llama-*-qlora.yaml")} == listed
    for name in PRESETS:
        config, text = preset(name)
        assert config.model.quantize == "nf4"
        assert config.model.name in em.ARCHS  # the hub id, whose architecture the estimate knows
        assert "tensor_parallel_size" in text and "--set rollout.tensor_parallel_size=" in text


@pytest.mark.parametrize("name", PRESETS)
def test_header_quotes_what_the_estimate_computes(name):
    """Every figure in the preset's header comment is recomputed from the preset itself: the comment cannot go stale."""
    config, text = preset(name)
    arch = em.resolve_arch(config.model.name)
    quoted = header(text)
    seen = set()
    for line in quoted:
        label, _, rest = line.partition(":")
        match = re.fullmatch(r"update \(one GPU\)|vLLM at TP(\d+)|(\d+ GB) GPU at TP(\d+)", label)
        if not match:
            continue
        tp = int(match.group(1) or match.group(3) or 1)
        est = em.estimate(arch, config, tp=tp)
        u, v = est["update_gib"], est["vllm_gib"]
        if label.startswith("update"):
            keys = ("base weights", "LoRA + grads + AdamW", "activations", "log-prob head", "CUDA")
            expected = [est["update_peak_gib"], *(u[k]["gib"] for k in keys), est["update_resident_gib"]]
        elif label.startswith("vLLM"):
            keys = ("weights", "KV cache", "LoRA slot", "activations", "CUDA + graphs")
            expected = [est["vllm_per_gpu_gib"], *(v[k]["gib"] for k in keys)]
        else:
            g = est["gpus"][match.group(2)]
            assert ("does NOT fit" not in rest) == g["fits"], line
            expected = [g["update_phase_gib"], g["generate_phase_gib"]]
            shares = [f"{g['gpu_memory_utilization_min']:.2f}", f"{g['gpu_memory_utilization_max']:.2f}"]
            assert numbers(rest)[2:] == shares, f"{name}: '{line}' is stale; rerun the script"
            rest = " ".join(numbers(rest)[:2])
        assert numbers(rest) == [f"{x:.1f}" for x in expected], f"{name}: '{line}' is stale; rerun the script"
        seen.add(label)
    assert {"update (one GPU)", "vLLM at TP1", "80 GB GPU at TP1", "141 GB GPU at TP1"} <= seen

    sized = next(line for line in quoted if line.startswith("Sized for:"))
    gpu, utilization = re.search(r"one (\d+ GB) GPU .*gpu_memory_utilization (\d\.\d+)", sized).groups()
    assert float(utilization) == config.rollout.gpu_memory_utilization
    fit = em.estimate(arch, config)["gpus"][gpu]
    assert fit["fits"] and fit["gpu_memory_utilization_min"] <= float(utilization) <= fit["gpu_memory_utilization_max"]


def test_published_parameter_counts():
    """The built-in shapes give the models' published sizes: 8.03B and 70.6B parameters."""
    assert em.weight_bytes(LLAMA_8B, "none") / 2 == pytest.approx(8.03e9, rel=0.002)
    assert em.weight_bytes(LLAMA_70B, "none") / 2 == pytest.approx(70.55e9, rel=0.002)


@pytest.mark.parametrize("arch", [LLAMA_8B, LLAMA_70B])
def test_nf4_shrinks_the_linears_about_4x_and_nothing_else(arch):
    ratio = em.linear_weight_bytes(arch, "none") / em.linear_weight_bytes(arch, "nf4")
    assert 3.8 < ratio < 4.0  # 16 bits against 4 bits plus bnb's quantization constants
    rest = em.weight_bytes(arch, "none") - em.linear_weight_bytes(arch, "none")
    assert em.weight_bytes(arch, "nf4") - em.linear_weight_bytes(arch, "nf4") == pytest.approx(rest)


def test_longer_answers_raise_kv_cache_and_activations_only():
    config, _ = preset("llama-3.1-8b-qlora")
    longer = replace(config, rollout={"max_new_tokens": 2 * config.rollout.max_new_tokens})
    a, b = em.estimate(LLAMA_8B, config), em.estimate(LLAMA_8B, longer)
    prompt, new = config.data.max_prompt_tokens, config.rollout.max_new_tokens
    longer_by = (prompt + 2 * new) / (prompt + new)
    assert b["vllm_gib"]["KV cache"]["gib"] == pytest.approx(a["vllm_gib"]["KV cache"]["gib"] * longer_by)
    # more tokens, and each token's share of the padding mask grows with the length too
    assert b["update_gib"]["activations"]["gib"] > a["update_gib"]["activations"]["gib"] * longer_by
    assert b["update_peak_gib"] > a["update_peak_gib"]
    assert b["update_gib"]["base weights"] == a["update_gib"]["base weights"]
    assert b["vllm_gib"]["weights"] == a["vllm_gib"]["weights"]


def test_tensor_parallel_splits_vllm_not_the_update():
    config, _ = preset("llama-3.3-70b-qlora")
    one, two = em.estimate(LLAMA_70B, config, tp=1), em.estimate(LLAMA_70B, config, tp=2)
    for key in ("weights", "KV cache", "LoRA slot"):
        assert two["vllm_gib"][key]["gib"] == pytest.approx(one["vllm_gib"][key]["gib"] / 2)
    assert two["vllm_per_gpu_gib"] < one["vllm_per_gpu_gib"]
    assert two["update_gib"] == one["update_gib"]
    # Without --tp the estimate reads rollout.tensor_parallel_size.
    assert em.estimate(LLAMA_70B, replace(config, rollout={"tensor_parallel_size": 2}))["vllm_gib"] == two["vllm_gib"]
    assert em.estimate(LLAMA_70B, config)["settings"]["tensor_parallel_size"] == 1


def test_group_size_and_quantization_settings():
    config, _ = preset("llama-3.1-8b-qlora")
    all_of_them = replace(config, update={"group_size": 0})
    act = em.estimate(LLAMA_8B, config)["update_gib"]["activations"]["gib"]
    assert em.estimate(LLAMA_8B, all_of_them)["update_gib"]["activations"]["gib"] == pytest.approx(
        act * config.rollout.num_candidates / config.update.group_size
    )
    full = em.estimate(LLAMA_8B, replace(config, model={"quantize": "none"}))
    nf4 = em.estimate(LLAMA_8B, config)
    assert full["update_gib"]["base weights"]["gib"] > 2.5 * nf4["update_gib"]["base weights"]["gib"]
    # peft keeps adapters of a bf16 base in fp32 (16 bytes a parameter with grads and AdamW), trl casts QLoRA's to bf16
    assert full["update_gib"]["LoRA + grads + AdamW"]["gib"] == pytest.approx(
        nf4["update_gib"]["LoRA + grads + AdamW"]["gib"] * 16 / 12
    )
    assert nf4["update_gib"]["KL reference"]["gib"] == 0  # the base with the adapter disabled
    fewer = em.estimate(LLAMA_8B, replace(config, lora={"target_modules": "q_proj,v_proj"}))
    assert fewer["update_gib"]["LoRA + grads + AdamW"]["gib"] < nf4["update_gib"]["LoRA + grads + AdamW"]["gib"] / 4


def test_architecture_from_a_config_json(tmp_path):
    fields = dataclasses.asdict(LLAMA_8B)
    del fields["num_key_value_heads"]  # absent: as many as attention heads
    (tmp_path / "config.json").write_text(json.dumps({**fields, "model_type": "llama", "rope_theta": 5e5}))
    arch = em.resolve_arch(str(tmp_path))
    assert arch == dataclasses.replace(LLAMA_8B, num_key_value_heads=LLAMA_8B.num_attention_heads)
    assert em.resolve_arch(str(tmp_path / "config.json")) == arch
    with pytest.raises(SystemExit, match="no architecture"):
        em.resolve_arch(str(tmp_path / "missing"))


def test_committed_json_is_current(tmp_path, monkeypatch, capsys):
    out = tmp_path / "estimates.json"
    monkeypatch.setattr(sys, "argv", ["estimate_memory.py", "--json", str(out)])
    em.main()
    printed = capsys.readouterr().out
    assert all(f"### {name}" in printed for name in PRESETS) and "| update | activations |" in printed
    assert json.loads(out.read_text()) == json.loads((ROOT / "docs/results/memory_estimates.json").read_text()), (
        "docs/results/memory_estimates.json is stale: run python scripts/estimate_memory.py"
    )


def test_activation_count_matches_what_autograd_keeps():
    """The per-token, per-layer activation formula against the bytes autograd saves for backward in a small Llama
    run as the update runs it: bf16 base, bf16 LoRA on every linear, a padded batch, SDPA, autocast."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    arch = em.Arch(
        hidden_size=256,
        num_hidden_layers=2,
        intermediate_size=896,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=512,
    )
    rank, batch, seq = 8, 2, 48

    def saved_bytes(layers: int) -> int:
        torch.manual_seed(0)
        cfg = LlamaConfig(**{**dataclasses.asdict(arch), "num_hidden_layers": layers}, attn_implementation="sdpa")
        model = get_peft_model(
            LlamaForCausalLM(cfg).to(torch.bfloat16),
            LoraConfig(r=rank, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear"),
        )
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.to(torch.bfloat16)  # as trl does for a quantized base
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        kept: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storage = t.untyped_storage()
            if storage.data_ptr() not in params:
                kept[storage.data_ptr()] = storage.nbytes()
            return t

        ids = torch.randint(0, arch.vocab_size, (batch, seq))
        mask = torch.ones(batch, seq, dtype=torch.long)
        mask[0, -5:] = 0  # completions of different lengths: padding
        with torch.autocast("cpu", dtype=torch.bfloat16), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model.base_model.model.model(input_ids=ids, attention_mask=mask)
        return sum(kept.values())

    measured = (saved_bytes(3) - saved_bytes(2)) / (batch * seq)  # one more layer
    assert measured == pytest.approx(em.activation_bytes_per_token_layer(arch, rank, 7, seq), rel=0.01)


def test_the_small_model_preset_loads_with_its_guides(monkeypatch):
    """The preset is the single source of the learning benchmark's TAO arm (scripts/bench_learning.py reads it)."""
    from rollouts.strategies import load_strategies

    small = load_config(ROOT / "configs" / "small-model-checker.yaml")
    assert small.update.method == "grpo" and small.reward.gate and small.reward.scorers[0] == "rule:instructions"
    monkeypatch.chdir(ROOT)  # the guide file's path is relative to where tao runs
    loaded = load_strategies(small.rollout.strategies, small.rollout.num_candidates)
    assert [len(s.guides) for s in loaded] == [0, 0, 2, 0]


@pytest.fixture
def bench(monkeypatch):
    """scripts/bench_learning.py as a module."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # as when the script runs: its siblings import
    spec = importlib.util.spec_from_file_location("bench_learning", ROOT / "scripts" / "bench_learning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_learning_benchmarks_validation_split_leaves_out_what_the_seeds_run_holds_out(bench, tmp_path, monkeypatch):
    """`bench_learning.py --validation` writes the full file less exactly the prompts a run on the full file with
    that seed holds out, or validation would see held-out prompts."""
    from tao.run.pool import Pool

    full = tmp_path / "ifeval.jsonl"
    rows = [{"key": 1000 + 7 * i, "prompt": f"p{i}", "instruction_id_list": [], "kwargs": []} for i in range(97)]
    full.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(bench, "IFEVAL", full)
    work = tmp_path / "work"
    work.mkdir()
    everything = bench.items_file(work, validation_of=None).read_text()
    (tmp_path / "all.jsonl").write_text(everything)
    validation = {json.loads(line)["id"] for line in bench.items_file(work, validation_of=5).read_text().splitlines()}

    pool = Pool(tmp_path / "pool.sqlite")
    with pool.ingest(tmp_path / "all.jsonl", load_config(bench.PRESET).data.holdout, seed=5):
        pass
    held_out = {p.id for p in pool.eval_prompts(-1, lambda p: True)}
    pool.close()
    assert len(held_out) == 19 and validation == {str(r["key"]) for r in rows} - held_out


def test_the_learning_benchmark_summarizes_a_candidate_over_validation_seeds(bench, tmp_path):
    """Choosing a setting takes several validation seeds: --summarize gives candidate minus preset over them, paired
    per prompt within each seed, and refuses to mix validation and held-out files."""

    def seed_file(seed: int, tao: list[float], candidate: list[float], split: str) -> Path:
        ids = [f"p{i}" for i in range(len(tao))]
        models = {}
        for label, scores in {"base": [0.0] * len(ids), "tao": tao, "candidate": candidate}.items():
            per_prompt = dict(zip(ids, scores, strict=True))
            measures = ("prompt_level", "instruction_level", "training_reward")
            models[label] = {"per_prompt": dict.fromkeys(measures, per_prompt)}
        path = tmp_path / f"{split}-{seed}.json"
        path.write_text(json.dumps({"seed": seed, "split": split, "models": models, "candidate_minus_tao": {}}))
        return path

    validation = "validation (the seed's held-out prompts left out)"
    files = [
        seed_file(5, [1, 0, 0, 1], [1, 1, 0, 1], validation),  # candidate +0.25
        seed_file(6, [0, 0, 1, 0, 1], [0, 0, 0, 0, 1], validation),  # candidate -0.2
    ]
    report = bench.seeds_summary(files)
    difference = report["candidate_minus_tao"]["prompt_level"]
    assert difference["seeds"] == [5, 6] and difference["per_seed"] == [0.25, -0.2]
    assert difference["mean"] == pytest.approx(0.025)
    low, high = difference["seeds_and_prompts_interval"]
    assert low < 0 < high and report["split"] == validation
    assert "tao_minus_rft" not in report and report["arms"]["candidate"]["prompt_level"]["per_seed"] == [0.75, 0.2]

    with pytest.raises(SystemExit, match="mix validation and held-out"):
        bench.seeds_summary([*files, seed_file(7, [0, 1], [1, 1], "held out")])

"""Estimate the GPU memory of a tao run on a Llama-style base: the update (one GPU) and vLLM (per GPU).

    python scripts/estimate_memory.py                  # both presets (configs/llama-*-qlora.yaml), JSON to docs/results
    python scripts/estimate_memory.py --config my.yaml [--model meta-llama/Llama-3.1-8B-Instruct | DIR | config.json]
        [--set section.key=value ...] [--tp N] [--json PATH]

The architecture comes from a model's config.json, or is built in for the presets' two bases. Sizes in bytes;
h hidden, L layers, I intermediate, a heads, k kv heads, d = h/a, V vocab, r lora.rank, m LoRA'd modules per layer,
b = update.group_size (0: rollout.num_candidates) sequences per micro-batch (trl trains one prompt group per
micro-batch, tao/update/grpo.py), s = data.max_prompt_tokens + rollout.max_new_tokens, n = rollout.max_new_tokens.

Update (one GPU, what autograd and the optimizer hold at the peak, the start of backward):
  base weights   nf4: decoder linears 4.127 bit/param (4 + bnb's constants: blocksize 64, double quant
                 8/64 + 32/(64*256)), embeddings, lm_head and norms bf16; none: 2 bytes/param.
  LoRA           r*(in+out) per targeted linear x 12 bytes (nf4: trl 1.16 casts QLoRA adapters to bf16: 2 param +
                 2 grad) or x 16 (none: peft keeps them fp32: 4 + 4), + AdamW's 2 states budgeted in fp32 (8;
                 torch keeps them in the parameter's dtype, so this is an upper bound).
  KL reference   0: trl takes the same base with the adapter disabled; no second copy.
  activations    gradient checkpointing on (update.gradient_checkpointing: auto on a GPU; non-reentrant, per decoder
                 layer): each layer's input, b*s*L*2h, plus one layer's activations recomputed in the backward,
                 b*s*(20h + 8I + 2rm + 2s). Off: b*s*L*(20h + 8I + 2rm + 2s), every layer's. Megatron's
                 method (Korthikanti et al. 2022, "Reducing activation recomputation": count the tensors kept for
                 backward, there s*b*h*(34 + 5as/h) for a GPT layer) applied to a Llama layer as transformers 5.19,
                 peft and torch's SDPA run it. Per token: 2 RMSNorm inputs kept in fp32 (8h), their bf16 outputs
                 (LoRA A's inputs, 4h), q and k, v repeated to all heads (a padded batch takes SDPA's masked path, no
                 GQA: 6h), the attention output = o_proj's input (2h), gate, up, silu(gate), down's input (8I), LoRA
                 A's outputs (2rm), and the padding mask SDPA turns into a bf16 bias in each layer (b*s*s*2: 2s).
                 No a*s*s scores (the memory-efficient kernel; Megatron's 5as/h term), no dropout. tests/
                 test_presets.py checks the count against what autograd keeps for a small Llama.
  log-prob head  b*s*4h (final norm, fp32) + b*n*6h (scored hidden states bf16 + their fp32 gradient) + a
                 4096 x 32768 bf16 tile: trl 1.16's fused head never holds the b*s*V*4 logits (shown for reference).
  CUDA           1 GiB: context, cuBLAS workspaces, allocator slack (assumed).
vLLM (per GPU at tensor parallel TP: --tp, else rollout.tensor_parallel_size):
  weights        the base as above / TP (vLLM's in-flight bitsandbytes on nf4 is NF4 + double quant too).
  KV cache       rollout.batch_size (vLLM's max_num_seqs) sequences of s tokens x 2*L*k*d*2 / TP, no prefix sharing
                 between a prompt's candidates (vLLM shares them: an upper bound); rollout.kv_cache_gib if set.
  LoRA slot      one adapter (max_loras=1) at vLLM's max_lora_rank, bf16, / TP.
  activations    vLLM's profiling forward, which it reserves: T*(3I/TP + 4h)*2 (gate/up output, silu*up, residual
                 and hidden), T = 16384 tokens, vLLM's default max_num_batched_tokens for the LLM class on a GPU of
                 70 GiB or more (tao does not set it; assumed).
  CUDA + graphs  1.5 GiB: CUDA context and captured CUDA graphs (assumed). Asleep, vLLM keeps these two lines.
A GPU fits when the update (its peak + vLLM asleep) and generation both fit. Before vLLM wakes for the evaluation
right after the update, tao empties torch's caching allocator (rollouts/vllm_engine.py), so only the update's
"resident" part stays (weights, LoRA with its optimizer state, CUDA). So generation = resident + vLLM, and
gpu_memory_utilization must be at least vLLM/capacity and at most 1 - resident/capacity.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rollouts.vllm_engine import VLLM_LORA_RANKS  # noqa: E402
from tao.core.config import Config  # noqa: E402
from tao.core.config_file import load_config  # noqa: E402

GIB = 2**30
NF4_BITS = 4 + 8 / 64 + 32 / (64 * 256)  # 4-bit codes + double-quantized absmax (8-bit per 64, fp32 per 256 blocks)
TRAIN_CUDA_GIB = 1.0
VLLM_CUDA_GIB = 1.5
VLLM_BATCHED_TOKENS = 16384
LOGPROB_TILE = 4096 * 32768 * 2  # trl 1.16's fused log-prob head: TOKEN_CHUNK_SIZE x chunk_size, bf16
# GiB that CUDA reports usable on a 24 GB card (L4 22.5, A10 22.3, RTX 4090 23.6: the smallest, rounded down), an
# H100 80GB, an H200
GPUS = {"24 GB": 22.0, "80 GB": 79.0, "141 GB": 139.0}
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # peft's all-linear
PRESETS = {
    "llama-3.1-8b-qlora": "configs/llama-3.1-8b-qlora.yaml",
    "llama-3.3-70b-qlora": "configs/llama-3.3-70b-qlora.yaml",
}
SETTINGS = ("quantize", "lora_rank", "lora_modules", "sequences_per_micro_batch", "sequence_tokens", "max_new_tokens")
SETTINGS += ("vllm_batch_size", "tensor_parallel_size", "gpu_memory_utilization", "gradient_checkpointing")
DEFAULT_JSON = ROOT / "docs/results/memory_estimates.json"


@dataclass(frozen=True)
class Arch:
    hidden_size: int
    num_hidden_layers: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    tie_word_embeddings: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear of one decoder layer."""
        h, i, q, kv = self.hidden_size, self.intermediate_size, self.num_attention_heads, self.num_key_value_heads
        d = self.head_dim
        return {
            "q_proj": (h, q * d),
            "k_proj": (h, kv * d),
            "v_proj": (h, kv * d),
            "o_proj": (q * d, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    @classmethod
    def from_json(cls, path: Path) -> Arch:
        data = json.loads((path / "config.json" if path.is_dir() else path).read_text())
        data.setdefault("num_key_value_heads", data["num_attention_heads"])
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


ARCHS = {
    "meta-llama/Llama-3.1-8B-Instruct": Arch(4096, 32, 14336, 32, 8, 128256),
    "meta-llama/Llama-3.3-70B-Instruct": Arch(8192, 80, 28672, 64, 8, 128256),
}


def resolve_arch(model: str) -> Arch:
    """A built-in architecture by hub id, or the one in a model directory's (or a file's) config.json."""
    if model in ARCHS:
        return ARCHS[model]
    path = Path(model)
    if path.is_file() or (path / "config.json").is_file():
        return Arch.from_json(path)
    raise SystemExit(f"no architecture for {model!r}: pass --model DIR, --model config.json or one of {list(ARCHS)}")


def targets(config: Config) -> list[str]:
    spec = config.lora.target_modules
    return list(LINEARS) if spec == "all-linear" else [t.strip() for t in spec.split(",") if t.strip() in LINEARS]


def linear_weight_bytes(arch: Arch, quantize: str) -> float:
    """The decoder's linear layers: NF4 with bnb's constants, or bf16."""
    params = arch.num_hidden_layers * sum(i * o for i, o in arch.shapes().values())
    return params * (NF4_BITS / 8 if quantize == "nf4" else 2)


def weight_bytes(arch: Arch, quantize: str) -> float:
    """Linears as above; embeddings, lm_head (when untied) and the RMSNorm weights in bf16."""
    h = arch.hidden_size
    other = arch.vocab_size * h * (1 if arch.tie_word_embeddings else 2) + (2 * arch.num_hidden_layers + 1) * h
    return linear_weight_bytes(arch, quantize) + 2 * other


def lora_params(arch: Arch, rank: int, modules: list[str]) -> int:
    return arch.num_hidden_layers * sum(rank * (i + o) for name, (i, o) in arch.shapes().items() if name in modules)


def activation_bytes_per_token_layer(arch: Arch, rank: int, lora_modules: int, seq: int) -> int:
    """What autograd keeps for backward per token and decoder layer (module docstring): 20h + 8I + 2rm + 2s."""
    return 20 * arch.hidden_size + 8 * arch.intermediate_size + 2 * rank * lora_modules + 2 * seq


def estimate(arch: Arch, config: Config, tp: int | None = None) -> dict[str, Any]:
    """Every component in GiB with its formula, the totals, and the fit on each GPU of ``GPUS``."""
    r = config.rollout
    tp = tp or r.tensor_parallel_size
    h, n_layers = arch.hidden_size, arch.num_hidden_layers
    quant, rank, modules = config.model.quantize, config.lora.rank, targets(config)
    b = config.update.group_size or r.num_candidates
    n = r.max_new_tokens
    s = config.data.max_prompt_tokens + n
    base = weight_bytes(arch, quant)
    per_token_layer = activation_bytes_per_token_layer(arch, rank, len(modules), s)
    checkpointed = config.update.gradient_checkpointing in ("auto", "on")  # auto: on, on a GPU
    if checkpointed:
        activations = (b * s * (n_layers * 2 * h + per_token_layer), "b*s*(2hL + 20h+8I+2rm+2s), checkpointed")
    else:
        activations = (b * s * n_layers * per_token_layer, "b*s*L*(20h+8I+2rm+2s)")
    lora_per_param = 12 if quant == "nf4" else 16
    vllm_rank = next((x for x in VLLM_LORA_RANKS if x >= rank), rank)
    kv_token = 2 * n_layers * arch.num_key_value_heads * arch.head_dim * 2
    kv = r.kv_cache_gib * GIB or r.batch_size * s * kv_token / tp  # per GPU
    bits = f"linears {NF4_BITS:.3f} bit, the rest bf16" if quant == "nf4" else "bf16"
    update = {
        "base weights": (base, bits),
        "LoRA + grads + AdamW": (lora_params(arch, rank, modules) * lora_per_param, f"r(in+out) x {lora_per_param} B"),
        "KL reference": (0.0, "base with the adapter disabled: no copy"),
        "activations": activations,
        "log-prob head": (b * s * 4 * h + b * n * 6 * h + LOGPROB_TILE, "b*s*4h + b*n*6h + tile; not b*s*V*4"),
        "CUDA": (TRAIN_CUDA_GIB * GIB, "context + workspaces (assumed)"),
    }
    vllm = {
        "weights": (base / tp, "base / TP"),
        "KV cache": (kv, "kv_cache_gib" if r.kv_cache_gib else "batch_size*s*2*L*k*d*2 / TP"),
        "LoRA slot": (lora_params(arch, vllm_rank, modules) * 2 / tp, f"r={vllm_rank}(in+out) x 2 B / TP"),
        "activations": (VLLM_BATCHED_TOKENS * (3 * arch.intermediate_size / tp + 4 * h) * 2, "T*(3I/TP+4h)*2"),
        "CUDA + graphs": (VLLM_CUDA_GIB * GIB, "context + CUDA graphs (assumed)"),
    }
    gib = {k: v / GIB for k, (v, _) in update.items()}
    peak = sum(gib.values())
    resident = gib["base weights"] + gib["LoRA + grads + AdamW"] + gib["CUDA"]
    vllm_total = sum(v for v, _ in vllm.values()) / GIB
    asleep = (vllm["activations"][0] + vllm["CUDA + graphs"][0]) / GIB
    gpus = {}
    for gpu, capacity in GPUS.items():
        need = math.ceil(vllm_total / capacity * 100) / 100
        room = max(0, math.floor((1 - resident / capacity) * 100) / 100)
        updating, generating = peak + asleep, resident + vllm_total
        gpus[gpu] = {"capacity_gib": capacity, "update_phase_gib": updating, "generate_phase_gib": generating}
        gpus[gpu].update(gpu_memory_utilization_min=need, gpu_memory_utilization_max=room)
        gpus[gpu]["fits"] = updating <= capacity and need <= room
    values = (quant, rank, modules, b, s, n, r.batch_size, tp, r.gpu_memory_utilization, checkpointed)
    return {
        "architecture": asdict(arch),
        "settings": dict(zip(SETTINGS, values, strict=True)),
        "update_gib": {k: {"gib": v / GIB, "formula": f} for k, (v, f) in update.items()},
        "update_peak_gib": peak,
        "update_resident_gib": resident,
        "logits_unfused_gib_not_counted": b * s * arch.vocab_size * 4 / GIB,
        "vllm_gib": {k: {"gib": v / GIB, "formula": f} for k, (v, f) in vllm.items()},
        "vllm_per_gpu_gib": vllm_total,
        "gpus": gpus,
    }


def summary(est: dict[str, Any]) -> list[str]:
    """The lines a preset's header quotes (tests/test_presets.py parses them back)."""
    u, v, tp = est["update_gib"], est["vllm_gib"], est["settings"]["tensor_parallel_size"]
    lines = [
        f"update (one GPU): {est['update_peak_gib']:.1f} GiB peak = base {u['base weights']['gib']:.1f} + LoRA "
        f"{u['LoRA + grads + AdamW']['gib']:.1f} + activations {u['activations']['gib']:.1f} + head "
        f"{u['log-prob head']['gib']:.1f} + CUDA {u['CUDA']['gib']:.1f} (resident {est['update_resident_gib']:.1f})",
        f"vLLM at TP{tp}: {est['vllm_per_gpu_gib']:.1f} GiB per GPU = weights {v['weights']['gib']:.1f} + KV "
        f"{v['KV cache']['gib']:.1f} + LoRA {v['LoRA slot']['gib']:.1f} + activations {v['activations']['gib']:.1f} "
        f"+ CUDA {v['CUDA + graphs']['gib']:.1f}",
    ]
    for gpu, g in est["gpus"].items():
        lines.append(
            f"{gpu} GPU at TP{tp}: {'fits' if g['fits'] else 'does NOT fit'} in {g['capacity_gib']:.0f} GiB: update "
            f"{g['update_phase_gib']:.1f}, generation {g['generate_phase_gib']:.1f} GiB; gpu_memory_utilization "
            f"{g['gpu_memory_utilization_min']:.2f}..{g['gpu_memory_utilization_max']:.2f}"
        )
    return lines


def table(name: str, est: dict[str, Any]) -> str:
    st = est["settings"]
    rows = [
        f"### {name}",
        "",
        f"{st['quantize']}, LoRA r{st['lora_rank']} on {len(st['lora_modules'])} modules/layer; "
        f"update: {st['sequences_per_micro_batch']} sequences x {st['sequence_tokens']} tokens per micro-batch; "
        f"vLLM: {st['vllm_batch_size']} sequences, TP{st['tensor_parallel_size']}",
        "",
        "| part | component | formula | GiB |",
        "| --- | --- | --- | ---: |",
    ]
    rows += [f"| update | {k} | {c['formula']} | {c['gib']:.1f} |" for k, c in est["update_gib"].items()]
    peak, resident, unfused = est["update_peak_gib"], est["update_resident_gib"], est["logits_unfused_gib_not_counted"]
    rows.append(f"| update | **peak** (resident: {resident:.1f}) | sum | **{peak:.1f}** |")
    rows.append(f"| not counted | fp32 logits | b*s*V*4: trl 1.16 never holds them | {unfused:.1f} |")
    rows += [f"| vLLM per GPU | {k} | {c['formula']} | {c['gib']:.1f} |" for k, c in est["vllm_gib"].items()]
    rows += [f"| vLLM per GPU | **total** | sum | **{est['vllm_per_gpu_gib']:.1f}** |", ""]
    rows += [f"- {line}" for line in summary(est)[2:]]
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="a tao config YAML (default: both presets)")
    parser.add_argument("--model", help="a built-in hub id, a model dir or its config.json (default: model.name)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as tao's --set")
    parser.add_argument("--tp", type=int, help="vLLM tensor parallel size (default: rollout.tensor_parallel_size or 1)")
    parser.add_argument("--json", type=Path, help="write the estimates here (presets: default docs/results/...)")
    args = parser.parse_args()
    runs = {args.config.stem: args.config} if args.config else {k: ROOT / p for k, p in PRESETS.items()}
    out = {}
    for name, path in runs.items():
        config = load_config(path, args.set)
        arch = resolve_arch(args.model or config.model.name)
        shown = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
        out[name] = {"config": str(shown), **estimate(arch, config, args.tp)}
        print(table(name, out[name]))
    target = args.json or (None if args.config else DEFAULT_JSON)
    if target:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {target}")


if __name__ == "__main__":
    main()

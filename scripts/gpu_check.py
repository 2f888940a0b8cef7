"""The GPU checks, as one prepared script for a lent GPU machine (no model hub, no internet there).

1. **Environment**: the GPU, the packages, `tao doctor`'s verdicts.
2. **A QLoRA round at Llama-3.1-8B's shape** with `configs/llama-3.1-8b-qlora.yaml`: a model of that architecture
   with random weights is built on the GPU (no hub: the shape is what matters for time and memory) with a word-level
   tokenizer of the same vocabulary size, then `tao run` does one real round on it: explore, score, a GRPO update of
   a rank-16 LoRA over the 4-bit NF4 base, evaluate, register. Prompts of ~1,000 tokens and a model that never stops
   early make every sequence the ~1,536 tokens the preset's memory estimate assumes. Reported: each stage's time
   and peak GPU memory, and the update's measured peak against `scripts/estimate_memory.py`'s estimate (ratio).
   The transformers engine generates: the vLLM wheel is too large to carry to that machine.
3. **The test suite with CUDA visible**: the default tests and the `gpu` ones, where `device()` is the GPU, so
   models load in bfloat16 (or NF4) on it and the trainers run there.

    python scripts/gpu_check.py --out DIR [--deadline-s 540]

Each part runs only if time is left before the deadline; a part that fails is recorded and the next one runs.
Writes DIR/gpu_check.json and the logs beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import CHATML  # noqa: E402  (the tests' chat template: the same ChatML)

VOCAB = 128256  # Llama 3's
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def even_tokens(prompts: list, completions: list, completion_ids: list, **kwargs: object) -> list[float]:
    """A reward with spread on a random model's answers: the share of even token ids."""
    return [sum(1 for t in ids if t % 2 == 0) / max(len(ids), 1) for ids in completion_ids]


def build_llama_8b(path: Path) -> dict:
    """Llama-3.1-8B's architecture with random weights (bfloat16), and a word-level tokenizer of its vocabulary."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {s: i for i, s in enumerate(SPECIALS)} | {f"w{i}": i for i in range(len(SPECIALS), VOCAB)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIALS[0]))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=SPECIALS[1],
        eos_token=SPECIALS[2],
        pad_token=SPECIALS[2],
        unk_token=SPECIALS[0],
        padding_side="left",
    )
    tokenizer.chat_template = CHATML
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    started = time.perf_counter()
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    params = sum(p.numel() for p in model.parameters())
    del model
    torch.cuda.empty_cache()
    return {"parameters": params, "seconds": round(time.perf_counter() - started, 1)}


def long_prompts(path: Path, count: int, words: int) -> Path:
    """``count`` prompts of ``words`` vocabulary words each (one token per word)."""
    import random

    rng = random.Random(0)
    text = [" ".join(f"w{rng.randrange(len(SPECIALS), VOCAB)}" for _ in range(words)) for _ in range(count)]
    rows = [{"id": f"p{i}", "prompt": t} for i, t in enumerate(text)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def qlora_round(out: Path, work: Path, seconds: float) -> dict:
    """One `tao run` round with the 8B QLoRA preset on the random 8B model; stage times and peak memory."""
    model_dir = work / "llama-8b-shape"
    result: dict = {"model": build_llama_8b(model_dir)}
    prompts = long_prompts(work / "prompts.jsonl", count=10, words=1000)
    sets = [
        f"model.name={model_dir}",
        "rollout.engine=transformers",
        "data.prompts_per_round=8",  # 2 optimizer steps of the preset's 4 prompt groups
        "data.holdout=0.2",  # 2 prompts evaluated
        "eval.max_prompts=2",
        "update.min_spread=0",
        "run.rounds=1",
    ]
    shutil.rmtree(work / "run", ignore_errors=True)  # a warm machine keeps /tmp: measure a fresh round
    command = [sys.executable, "-m", "tao.cli", "run", "--prompts", str(prompts), "--run-dir", str(work / "run")]
    command += ["--config", str(ROOT / "configs/llama-3.1-8b-qlora.yaml"), "--quiet"]
    command += ["--reward", f"{Path(__file__).resolve()}:even_tokens"] + [x for s in sets for x in ("--set", s)]
    started = time.perf_counter()
    with open(out / "qlora_round.log", "w") as log:
        try:
            done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=seconds)
            result["exit_code"] = done.returncode
        except subprocess.TimeoutExpired:
            result["exit_code"] = "timed out"
    result["command_seconds"] = round(time.perf_counter() - started, 1)
    stages = work / "run/round-0001/stages"
    result["stages"] = {p.stem: json.loads(p.read_text()) for p in sorted(stages.glob("*.json"))}
    result["estimate"] = estimate(sets)
    update_peak = result["stages"].get("update", {}).get("peak_gpu_gib")
    if update_peak:
        result["update_peak_over_estimate"] = round(update_peak / result["estimate"]["update_peak_gib"], 3)
    return result


def estimate(sets: list[str]) -> dict:
    """scripts/estimate_memory.py's figures for the preset with the same settings."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import estimate_memory as em

    from tao.core.config_file import load_config

    config = load_config(ROOT / "configs/llama-3.1-8b-qlora.yaml", [s for s in sets if not s.startswith("model.")])
    figures = em.estimate(em.ARCHS["meta-llama/Llama-3.1-8B-Instruct"], config)
    return {"update_peak_gib": figures["update_peak_gib"], "figures": figures}


def environment(out: Path) -> dict:
    import torch

    versions = {}
    for name in ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "bitsandbytes", "pyarrow"):
        try:
            versions[name] = __import__(name).__version__
        except Exception as exc:  # noqa: BLE001 - recorded, and the checks go on
            versions[name] = f"import failed: {exc!r}"[:300]
    doctor = subprocess.run([sys.executable, "-m", "tao.cli", "doctor"], cwd=ROOT, capture_output=True, text=True)
    (out / "doctor.txt").write_text(doctor.stdout + doctor.stderr)
    return {
        "gpu": torch.cuda.get_device_name(0),
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
        "cuda": torch.version.cuda,
        "cpu_cores": os.cpu_count(),
        "versions": versions,
        "doctor_exit_code": doctor.returncode,
    }


def test_suite(out: Path, seconds: float) -> dict:
    """The default and gpu tests over 8 workers of 2 threads each. At ``seconds`` pytest is interrupted (SIGINT).
    Verbose, so that each test's outcome is logged as it ends: a failure is named even if the summary is cut."""
    command = [sys.executable, "-m", "pytest", "-v", "-rf", "-n", "8", "-m", "not slow and not vllm"]
    command += ["-p", "no:cacheprovider", "--timeout", "300"]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}  # 16 cores: 8 workers x 2 threads, not 8 x 16
    started = time.perf_counter()
    with open(out / "tests.log", "w") as log:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            code: int | str = proc.wait(timeout=max(seconds - 30, 30))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            code = "interrupted"
            try:
                proc.wait(timeout=25)
            except subprocess.TimeoutExpired:
                proc.kill()
    lines = (out / "tests.log").read_text().splitlines()
    outcomes = [line for line in lines if " FAILED " in line or " ERROR " in line]  # "[gw3] [ 12%] FAILED tests/..."
    failed = sorted({line.split(" FAILED ")[-1].split(" ERROR ")[-1].strip() for line in outcomes})
    summary = [line for line in lines if " passed" in line or " failed" in line][-1:]
    return {"exit_code": code, "seconds": round(time.perf_counter() - started, 1), "summary": summary, "failed": failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for gpu_check.json and the logs")
    parser.add_argument("--work", default="/tmp/tao-gpu-check", help="scratch folder (the 8B model: 16 GB)")
    parser.add_argument("--deadline-s", type=float, default=540, help="start no part after this many seconds")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: qlora,tests")
    args = parser.parse_args()
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    report: dict = {"environment": environment(out)}
    print(json.dumps(report["environment"], indent=1), flush=True)
    # the round may take all but 2 minutes of what is left; the tests take the rest
    parts = {"qlora": lambda left: qlora_round(out, work, left - 120), "tests": lambda left: test_suite(out, left)}
    for name, part in parts.items():
        left = args.deadline_s - (time.perf_counter() - started)
        if name in args.skip.split(",") or left < 60:
            report[name] = {"skipped": "asked" if name in args.skip.split(",") else f"{left:.0f} s left"}
            continue
        try:
            report[name] = part(left)
        except Exception as exc:  # noqa: BLE001 - recorded, and the next part runs
            report[name] = {"error": repr(exc)[:2000]}
        (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
        print(name, json.dumps(report[name], indent=1)[:3000], flush=True)
    report["seconds"] = round(time.perf_counter() - started, 1)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

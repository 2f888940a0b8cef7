"""The base model and the LoRA policy on top of it.

Models load from safetensors only (pickle checkpoints are refused) and run no code shipped with the model
unless ``model.trust_remote_code`` is set.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tao.core import embedded, processes
from tao.core.config import LoraConfig, ModelConfig
from tao.core.console import Console
from tao.core.errors import InputError
from tao.core.storage import sha256_file, write_json
from tao.core.types import Prompt


@dataclass(frozen=True)
class BaseModel:
    """Which base model a run uses, pinned by the hash of its files."""

    name: str  # as given: "default", a directory, or a hub id
    path: Path  # the local directory it loads from
    sha256: str  # of every file in it: weights, config, tokenizer (model, merges, vocabulary), chat template, code

    def pinned_by(self, sha256: str) -> bool:
        """Whether a run or version recorded this model: by its hash, or (made before every file was hashed) by the
        hash of its weights, config and template files alone."""
        return sha256 == self.sha256 or sha256 == content_hash(self.path, legacy=True)


def resolve_base(config: ModelConfig, console: Console) -> BaseModel:
    """Find the base model's directory (converting the embedded default on first use) and hash it."""
    if config.name == "default":
        path = embedded.embedded_model_dir(console)
    elif Path(config.name).expanduser().is_dir():
        path = Path(config.name).expanduser().resolve()
    else:
        path = _download(config.name)
    if not any(path.glob("*.safetensors")):
        pickles = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        found = f" (found {', '.join(pickles)})" if pickles else ""
        raise InputError(f"no *.safetensors weights{found}; tao loads safetensors only", file=path)
    if not config.trust_remote_code:
        _refuse_remote_code(path)
    return BaseModel(config.name, path, content_hash(path))


def _refuse_remote_code(path: Path) -> None:
    """A model whose config or tokenizer maps to Python files of its own runs that code when loaded: refuse it
    unless the user trusts it (transformers would only ask interactively, or fail deep inside a stage)."""
    for name in ("config.json", "tokenizer_config.json"):
        try:
            data = json.loads((path / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read: {exc}", file=path / name) from None
        if isinstance(data, dict) and data.get("auto_map"):
            raise InputError(
                "this model ships its own Python code (auto_map); tao runs it only with model.trust_remote_code=true",
                file=path / name,
                field="auto_map",
            )


def _download(name: str) -> Path:
    if name.count("/") != 1:
        raise InputError("not a model directory, and not a hub id of the form org/name", field="model", file=name)
    try:
        from huggingface_hub import snapshot_download

        patterns = ["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "*.tiktoken"]
        return Path(snapshot_download(name, allow_patterns=patterns))
    except Exception as exc:  # offline, unknown repo, gated repo: one line for the user
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"not a local directory, and the hub did not provide it: {reason}", file=name) from None


def content_hash(path: Path, legacy: bool = False) -> str:
    """sha256 over every file the loaders may read (name and content; hidden files aside), the weights, config,
    tokenizer files, chat template and any code; cached by size and mtime in the tao cache. ``legacy``: over the
    .safetensors, .json and .jinja files only, as runs recorded it before 2026-12-07."""
    if legacy:
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".safetensors", ".json", ".jinja"))
    else:
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
    cache_file = embedded.cache_dir() / "hashes.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    outer = hashlib.sha256()
    changed = False
    for file in files:
        stat = file.stat()
        key = f"{file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        if key not in cache:
            cache[key] = sha256_file(file)
            changed = True
        name = file.name if legacy else file.relative_to(path).as_posix()
        outer.update(f"{name}\0{cache[key]}\n".encode())
    if changed:
        with contextlib.suppress(OSError):  # a read-only cache only costs time
            write_json(cache_file, cache)
    return outer.hexdigest()


def device() -> Any:
    """This process's device: its GPU (one per process under ``accelerate launch``), else the CPU."""
    import torch

    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


@contextmanager
def gpu_peak(figures: dict) -> Iterator[None]:
    """Record in ``figures["peak_gpu_gib"]`` the most GPU memory torch's allocator held inside the block (GiB);
    nothing on a CPU. Measured with the transformers engine; whether vLLM's own memory pools show in it is not
    checked (vLLM has not run on a GPU here)."""
    import torch

    if not torch.cuda.is_available():
        yield
        return
    torch.cuda.reset_peak_memory_stats(device())
    yield
    figures["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated(device()) / 2**30, 2)


def load_tokenizer(base: BaseModel, config: ModelConfig) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base.path, trust_remote_code=config.trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise InputError("the tokenizer has no chat template; tao needs an instruct/chat model", file=base.path)
    return tokenizer


def load_base(base: BaseModel, config: ModelConfig) -> Any:
    """The base model in eval mode, in ``model.dtype``, or 4-bit NF4 with ``quantize: nf4``."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        base.path,
        use_safetensors=True,
        trust_remote_code=config.trust_remote_code,
        **load_kwargs(config.quantize, config.dtype),
    )
    if config.quantize == "none" and processes.sharded() is None:  # FSDP / ZeRO-3 place the shards themselves
        model.to(device())
    model.eval()
    return model


def compute_dtype(dtype: str, gpu: bool) -> Any:
    """The torch dtype for ``model.dtype``: auto is bfloat16 on GPUs and float32 on CPUs (bfloat16 pays off there
    only with AMX-BF16, and changes every number a CPU run produces, so it is asked for, not guessed)."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if gpu else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]


def load_kwargs(quantize: str, dtype: str = "auto") -> dict[str, Any]:
    """``from_pretrained`` arguments for the compute precision and ``quantize`` (none, or 4-bit NF4 QLoRA)."""
    import torch
    from transformers import BitsAndBytesConfig

    dev = device()
    compute = compute_dtype(dtype, gpu=dev.type == "cuda")
    kwargs: dict[str, Any] = {"dtype": compute}
    if quantize == "nf4":
        # FSDP and ZeRO-3 shard the 4-bit weights like any others only when they are stored in the compute
        # dtype (bitsandbytes' quant_storage), and place them themselves (no device_map).
        sharded = processes.sharded() is not None
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=compute,
            bnb_4bit_use_double_quant=True,
            bnb_4bit_quant_storage=compute if sharded else torch.uint8,
        )
        if not sharded:
            kwargs["device_map"] = {"": str(dev)}
    return kwargs


def lora_targets(lora: LoraConfig) -> str | list[str]:
    """peft's ``target_modules``: "all-linear", or the listed module names."""
    if lora.target_modules == "all-linear":
        return "all-linear"
    return [t.strip() for t in lora.target_modules.split(",") if t.strip()]


def peft_lora_config(lora: LoraConfig, task_type: str = "CAUSAL_LM") -> Any:
    """peft's LoraConfig for ``lora``: the one adapter shape of runs, the SFT baseline and reward models
    (``SEQ_CLS``: peft then also trains the new scoring head in full)."""
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=lora.rank, lora_alpha=lora.alpha, lora_dropout=0.0, target_modules=lora_targets(lora), task_type=task_type
    )


def check_lora_targets(base: BaseModel, config: ModelConfig, lora: LoraConfig) -> None:
    """Fail before any work when ``lora.target_modules`` names modules the model does not have."""
    targets = lora_targets(lora)
    if targets == "all-linear":
        return
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    hf_config = AutoConfig.from_pretrained(base.path, trust_remote_code=config.trust_remote_code)
    with torch.device("meta"):  # the module tree only, no weights
        skeleton = AutoModelForCausalLM.from_config(hf_config, trust_remote_code=config.trust_remote_code)
    names = {name.rsplit(".", 1)[-1] for name, _ in skeleton.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in skeleton.named_modules() if isinstance(m, torch.nn.Linear)})
        raise InputError(
            f"the model has no module {missing[0]!r}; its linear modules are {', '.join(linear)}",
            field="lora.target_modules",
        )


def with_adapter(base_model: Any, adapter: Path | None, lora: LoraConfig, trainable: bool, seed: int) -> Any:
    """The base with a LoRA adapter: loaded from ``adapter``, or a fresh one (B = 0, so it equals the base).

    Undo with :func:`without_adapter` before attaching another one to the same base.
    """
    from peft import PeftModel, get_peft_model
    from transformers import set_seed

    if adapter is not None:
        if not (adapter / "adapter_model.safetensors").is_file():
            raise InputError("no adapter_model.safetensors; tao loads adapters from safetensors only", file=adapter)
        model = PeftModel.from_pretrained(base_model, adapter, is_trainable=trainable)
    else:
        set_seed(seed)  # LoRA's A matrices are drawn at random
        model = get_peft_model(base_model, peft_lora_config(lora))
    if not trainable:
        model.eval()
    return model


def without_adapter(model: Any) -> Any:
    """The base model again, with every LoRA layer removed (nothing merged)."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        model = model.unload()
    model.eval()
    return model


class Policy:
    """The base model in memory, with at most one adapter attached at a time.

    The base loads once, on first use (a finished run loads nothing); each stage borrows it with
    :meth:`attached` and gets it back without the adapter.
    """

    def __init__(self, base: BaseModel, model_config: ModelConfig, lora: LoraConfig):
        self.base = base
        self.model_config = model_config
        self.lora = lora
        self.tokenizer = load_tokenizer(base, model_config)
        self._model: Any = None

    @contextmanager
    def attached(self, adapter: Path | None, trainable: bool = False, seed: int = 0) -> Iterator[Any]:
        """The model with ``adapter`` (None: the plain base, or a fresh adapter when ``trainable``)."""
        if self._model is None:
            self._model = load_base(self.base, self.model_config)
        model = self._model
        if adapter is not None or trainable:
            model = with_adapter(model, adapter, self.lora, trainable, seed)
        try:
            yield model
        finally:
            self._model = without_adapter(model)

    def unload(self) -> None:
        """Drop the base model from memory; the next stage loads it again."""
        self._model = None


def chat_token_ids(tokenizer: Any, prompt: Prompt) -> list[int]:
    """The prompt as the model sees it: the chat template applied (with the request's tools), the assistant turn
    opened."""
    ids = tokenizer.apply_chat_template(
        prompt.chat(), tools=prompt.tool_list(), add_generation_prompt=True, tokenize=True, return_dict=False
    )
    return list(ids)


def stop_token_ids(tokenizer: Any, model_dir: Path) -> list[int]:
    """Tokens that end an answer: the tokenizer's eos and the eos ids of the model's (generation) config."""
    stop = {tokenizer.eos_token_id}
    for name in ("config.json", "generation_config.json"):
        try:
            eos = json.loads((model_dir / name).read_text()).get("eos_token_id")
        except (OSError, ValueError):
            continue
        stop.update([eos] if isinstance(eos, int) else list(eos or []))
    return sorted(stop)


def prompt_fits(tokenizer: Any, max_tokens: int, source: Path, console: Console) -> Callable[[Prompt], bool]:
    """Whether a prompt's chat-templated length fits ``max_tokens`` (``data.max_prompt_tokens``). Longer ones, and
    ones the model's chat template refuses (e.g. roles that must alternate; a warning names each), are passed over."""

    def fits(prompt: Prompt) -> bool:
        try:
            return len(chat_token_ids(tokenizer, prompt)) <= max_tokens
        except Exception as exc:
            console.warn(f"{source}: the model's chat template refuses prompt {prompt.id!r}, passed over: {exc}")
            return False

    return fits

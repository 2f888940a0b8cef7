"""``tao export``: a version as a directory that serving stacks load, with a model card.

Two forms. The adapter (default): peft's files as they are, which ``vllm serve BASE --enable-lora --lora-modules
NAME=DIR`` and ``PeftModel.from_pretrained(base, DIR)`` accept. Merged (``--merge``): the base model with the adapter
folded in (the sum taken in float32, never over the 4-bit form a QLoRA run trained with), saved in the base's own
precision (``--dtype`` float32 or bfloat16 asks for another) as safetensors with the base's tokenizer and chat
template, which transformers and vLLM load as a plain model: an 8B model is 16 GB in bfloat16, not 32.
Either way the directory is built beside ``--out`` and renamed into place when complete.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tao.core.errors import InputError
from tao.core.storage import publish_dir, write_json, write_text
from tao.run.registry import Version, held_out, lineage

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


DTYPES = ("base", "float32", "bfloat16", "float16")


def export(root: Path, version: Version, out: Path, merge: bool, dtype: str = "base") -> Path:
    if out.exists():
        raise InputError("already exists; choose another --out or remove it", file=out)
    if not version.has_weights:
        raise InputError(f"{version.name} has no weights (collected by `tao models gc`)")
    if version.kind == "reward-model":
        raise InputError(f"{version.name} is a reward model; use its directory as rm:DIR", field="VERSION")
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    precision = saved_dtype(Path(version.manifest["base_model"]["path"]), dtype) if merge else None
    if merge:
        _merge(version, tmp, precision)
    else:
        for name in ADAPTER_FILES:
            shutil.copy2(version.adapter / name, tmp / name)
    write_json(tmp / "tao_manifest.json", version.manifest)
    write_text(tmp / "README.md", model_card(root, version, out, precision))
    publish_dir(tmp, out)
    return out


def _merge(version: Version, out: Path, precision: str) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = Path(version.manifest["base_model"]["path"])
    if not base.is_dir():
        raise InputError("the base model this version was trained on is not here", file=base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, use_safetensors=True)
    merged = PeftModel.from_pretrained(model, version.adapter).merge_and_unload()
    merged.to(getattr(torch, precision)).save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)


def saved_dtype(base: Path, asked: str) -> str:
    """The precision a merged model is saved in: the one asked for, else the base's own (its config.json's
    ``dtype``, or ``torch_dtype`` in older files; float32 when it says neither)."""
    if asked != "base":
        return asked
    try:
        config = json.loads((base / "config.json").read_text())
    except (OSError, ValueError):
        return "float32"
    found = config.get("dtype") or config.get("torch_dtype") or "float32"
    return found if found in DTYPES else "float32"


def model_card(root: Path, version: Version, out: Path, precision: str | None) -> str:
    """The README.md of an export; ``precision`` is the merged model's (None: an adapter)."""
    merge = precision is not None
    m = version.manifest
    base = m["base_model"]
    chain = lineage(root, version)
    rows = "\n".join(
        f"| {v.name} | {v.kind} | {v.manifest.get('created', '')} | {_data(v.manifest)} | {held_out(v.manifest)} |"
        for v in chain
    )
    serve = (
        f"    vllm serve {out}\n\n    AutoModelForCausalLM.from_pretrained('{out}')"
        if merge
        else f"    vllm serve {base['path']} --enable-lora --lora-modules {_slug(version.name)}={out} "
        f"--max-lora-rank {m.get('adapter_shape', {}).get('r', 16)}\n\n"
        f"    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained('{base['path']}'), '{out}')"
    )
    return f"""# {version.name}

{f"A merged model (base + adapter, {precision} safetensors)" if merge else "A LoRA adapter (peft format)"} made by
tao ({m["kind"]}), exported from `{version.dir}`.

## Base model

`{base["name"]}` at `{base["path"]}`, sha256 `{base["sha256"]}` (over its weights, config and tokenizer files).
Adapter: rank {m.get("adapter_shape", {}).get("r")}, alpha {m.get("adapter_shape", {}).get("lora_alpha")},
modules {", ".join(m.get("adapter_shape", {}).get("target_modules", []))}.

## Lineage (newest first)

| version | kind | created | data | held-out evaluation |
|---|---|---|---|---|
{rows}

Scorers: {", ".join(m.get("scorers", [])) or "none (supervised)"}. Seed {m.get("seed")}. The full config and package
versions are in `tao_manifest.json`.

## Use

{serve}

## Intended use

Answering prompts like those it was tuned on ({_data(m)}), at the same inference cost as the base model. A TAO
version was tuned without labels: on the prompts alone, rewarded by the scorers above.

## Limitations

- It is as good as its scorers: a TAO version learned what they reward, including their blind spots. The held-out
  figures above are measured by the same scorers unless the run set `eval.check`.
- It was evaluated on held-out prompts from the same logs, not on other tasks; it can be worse there than the base.
- It inherits the base model's limitations and licence.
"""


def _data(m: dict[str, Any]) -> str:
    if "prompts" in m:
        p = m["prompts"]
        return f"{p['trained']} of {p['count']} prompts, sha256 {p['sha256'][:12]}"
    if "data" in m:
        return f"{m['data']['examples']} labeled examples, sha256 {m['data']['sha256'][:12]}"
    return "-"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)

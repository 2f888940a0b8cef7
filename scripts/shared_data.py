"""Where the scripts find the real data nobody here wrote: ``../shared/data`` beside the repository (each set's
source and licence are inside it)."""

from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IFEVAL = DATA / "ifeval" / "prompts.jsonl"  # IFEval's prompts with their labels (Apache-2.0)

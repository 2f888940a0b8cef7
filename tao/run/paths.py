"""Every path of a run directory, in one place.

runs/<name>/
  .lock                held by the process writing the run
  config.yaml          the config of the latest invocation
  run.json             the base model the run is bound to
  pool.sqlite          every prompt ingested (deduplicated), and which are held out (assigned once per prompt)
  report.md            rounds at a glance, rebuilt after each round
  tracker.json         with run.report_to: the rounds logged to the trackers (tao/run/tracker.py)
  tensorboard/         with run.report_to: [tensorboard], its event files
  baseline/eval.jsonl  greedy answers of the base model on the held-out prompts, scored
  round-0001/
    config.yaml        the resolved config the round runs with (written first)
    plan.json          its prompts, parent round, seed, prompts-file hash; marks the round as started
    rollouts.jsonl     explored candidates, until the score stage has copied them with their scores
    candidates.jsonl   explored candidates with their scores
    .trainer/          trl's scratch directory during the update
    .adapter.tmp/      the adapter being saved, renamed to adapter/ when complete
    adapter/           the LoRA adapter (peft format)
    eval.jsonl         greedy answers of this round's model on the held-out prompts, scored
    metrics.json       what the round measured
    manifest.json      lineage; its presence marks the round finished
    stages/<name>.json one per finished stage: its time and figures
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_ROUND = re.compile(r"^round-(\d{4,})$")


def default_run_dir(prompts: Path) -> Path:
    """``runs/<prompts file stem>``: the same command on the same file resumes the same run."""
    return Path("runs") / prompts.stem


@dataclass(frozen=True)
class RoundPaths:
    dir: Path

    @property
    def index(self) -> int:
        return int(self.dir.name.split("-")[1])

    @property
    def plan(self) -> Path:
        return self.dir / "plan.json"

    @property
    def config(self) -> Path:
        return self.dir / "config.yaml"

    @property
    def rollouts(self) -> Path:
        """Explored candidates before scoring (removed once ``candidates`` is written)."""
        return self.dir / "rollouts.jsonl"

    @property
    def candidates(self) -> Path:
        return self.dir / "candidates.jsonl"

    @property
    def adapter(self) -> Path:
        return self.dir / "adapter"

    @property
    def adapter_tmp(self) -> Path:
        return self.dir / ".adapter.tmp"

    @property
    def trainer(self) -> Path:
        """trl's scratch output directory for the update."""
        return self.dir / ".trainer"

    @property
    def eval(self) -> Path:
        return self.dir / "eval.jsonl"

    @property
    def metrics(self) -> Path:
        return self.dir / "metrics.json"

    @property
    def manifest(self) -> Path:
        return self.dir / "manifest.json"

    def stage(self, name: str) -> Path:
        return self.dir / "stages" / f"{name}.json"


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def run(self) -> Path:
        return self.root / "run.json"

    @property
    def pool(self) -> Path:
        return self.root / "pool.sqlite"

    @property
    def split(self) -> Path:  # runs made before the pool: carried over into it
        return self.root / "split.json"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def tracker(self) -> Path:
        return self.root / "tracker.json"

    @property
    def baseline_eval(self) -> Path:
        return self.root / "baseline" / "eval.jsonl"

    def round(self, index: int) -> RoundPaths:
        return RoundPaths(self.root / f"round-{index:04d}")

    def rounds(self) -> list[RoundPaths]:
        """Round directories that exist, in order."""
        if not self.root.is_dir():
            return []
        found = sorted(int(m.group(1)) for p in self.root.iterdir() if (m := _ROUND.match(p.name)))
        return [self.round(i) for i in found]

"""What each exploration strategy found in finished runs: per strategy, over the rounds' scored candidates, the
mean reward, the share that fully passed the checker and the share that followed any of it; for the exemplars
strategy, how much of each answer repeats the answers it was shown (word 5-grams).

Reads each round's `candidates.jsonl`; the exemplars a round showed are rebuilt from the rounds before it by the
loop's own function (rollouts/exemplars.py `from_run`). A checker part scores 1 for an answer that meets every
requirement and 0 for one that meets none (rule:instructions does).

    python scripts/strategy_yield.py RUN_DIR [RUN_DIR ...] [--part rule:instructions] [--from-round 2] [--out F]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rollouts.exemplars import SHOWN, from_run  # noqa: E402
from tao.paths import RunPaths  # noqa: E402
from tao.storage import read_jsonl  # noqa: E402

MOSTLY = 0.5  # an answer with more than half of its 5-grams in the answers shown counts as mostly copied


def grams(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def copied_share(answer: str, shown: list[str]) -> float:
    """The share of the answer's word 5-grams that occur in any shown answer (0 for an answer under 5 words)."""
    own = grams(answer)
    return len(own & set().union(*map(grams, shown))) / len(own) if own else 0.0


def yields(run_dirs: list[Path], part: str, from_round: int = 1) -> dict[str, dict]:
    """Per strategy, over the runs' rounds from ``from_round`` on: what its candidates scored."""
    rows: defaultdict[str, list[dict]] = defaultdict(list)
    copied: defaultdict[str, list[float]] = defaultdict(list)
    for run_dir in run_dirs:
        paths = RunPaths(run_dir)
        for rp in paths.rounds():
            if rp.index < from_round or not rp.candidates.is_file():
                continue
            answers = {e.prompt.id: e.answer for e in from_run(paths, rp.index)}
            for row in read_jsonl(rp.candidates):
                rows[row["strategy"]].append(row)
                if row["context"].startswith(SHOWN):
                    ids = row["context"].removeprefix(SHOWN).split(", ")
                    copied[row["strategy"]].append(copied_share(row["text"], [answers[i] for i in ids]))
    out = {}
    for strategy, found in sorted(rows.items()):
        parts = [r["scores"].get(part) or 0.0 for r in found]
        out[strategy] = {
            "candidates": len(found),
            "mean_reward": sum(r["score"] or 0.0 for r in found) / len(found),
            "passed": sum(p >= 1 for p in parts) / len(found),
            "followed_any": sum(p > 0 for p in parts) / len(found),
            "mean_words": sum(len(r["text"].split()) for r in found) / len(found),
        }
        if copied[strategy]:
            shares = copied[strategy]
            out[strategy] |= {
                "shown_exemplars": len(shares),
                "copied_5gram_share": sum(shares) / len(shares),
                "mostly_copied": sum(s > MOSTLY for s in shares),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (tao run --run-dir)")
    parser.add_argument("--part", default="rule:instructions", help="the checker's part of the candidates' scores")
    parser.add_argument("--from-round", type=int, default=1, help="skip the rounds before this one")
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    found = yields(args.runs, args.part, args.from_round)
    for strategy, f in found.items():
        copy = ""
        if "copied_5gram_share" in f:
            copy = f"  copied {f['copied_5gram_share']:.1%} ({f['mostly_copied']} mostly)"
        print(
            f"{strategy:>40} {f['candidates']:5d} candidates  reward {f['mean_reward']:.3f}  passed {f['passed']:.1%}"
            f"  followed any {f['followed_any']:.1%}  {f['mean_words']:.0f} words{copy}"
        )
    if args.out:
        result = {"runs": [str(r) for r in args.runs], "part": args.part, "from_round": args.from_round}
        args.out.write_text(json.dumps(result | {"strategies": found}, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""How far the training reward `rule:instructions` agrees with the yardstick, IFEval's checker on IFEval's labels.

    python scripts/instruction_agreement.py --answers FILE [--answers FILE ...] [--out FILE]

The reward reads instructions from the prompt text (reward/instructions/); the yardstick reads IFEval's labels
(`instruction_id_list`, `kwargs`). Three measures:

1. Detection, prompts alone: per IFEval instruction type, the share of labelled instructions the reward finds
   (same id) and finds with the labelled arguments; and how many instructions it finds that no label names.
2. Verdicts, on real answers (each --answers file: JSONL rows with `prompt_id` and `text`, such as a round's
   candidates.jsonl, `tao explore --out` or `tao compare`'s items): per type, the share of (answer, labelled
   instruction) pairs where the reward's verdict equals the official one. The reward's verdict on a labelled
   instruction is its check of the instruction it found with that id and those arguments (else with that id);
   an instruction it did not find counts as a disagreement. Prompt level: `rule:all_instructions` against IFEval's
   prompt-level strict (no instruction found counts as a disagreement); and `rule:instructions` against the
   instruction-level share. Beside them, per type, how often the answers follow it by the official checker, and
   in how many of the prompts carrying it at least one answer does: what exploration finds to learn from, when the
   files are a run's candidates.
3. Prompts without instructions (GSM8K, SVAMP, topical questions): the share in which the reward finds one.

Writes JSON (default docs/results/instruction_agreement.json) and prints the per-type table.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_data import DATA  # noqa: E402

from reward import ifeval  # noqa: E402
from reward.instructions import Instruction, detect  # noqa: E402
from tao.core.types import Message, Prompt  # noqa: E402

# Topical prompts that mention instruction words without asking for them.
TOPICAL = [
    "How do I convert a string to lowercase in Python?",
    "What is the difference between lowercase and uppercase letters?",
    "Explain the difference between lowercase and uppercase letters in passwords.",
    "Write a Python function that returns a JSON object with the user's name.",
    "How do I parse JSON in JavaScript?",
    "Why does my CSV file break when a field contains commas?",
    "Explain how to avoid commas in CSV files.",
    "Summarize the plot of Hamlet.",
    "What does the word 'paragraph' mean?",
    "Translate 'good morning' into French.",
    "My API returns JSON with a trailing comma. Is that valid?",
    "Which programming languages are case sensitive?",
]


def _normal(kwargs: dict) -> tuple:
    """Arguments compared as IFEval's checker reads them (keywords and words case-insensitively)."""
    out = []
    for key, value in kwargs.items():
        if isinstance(value, (list, tuple)):
            value = tuple(sorted(str(v).lower() for v in value))
        elif isinstance(value, str):
            value = value.lower()
        out.append((key, value))
    return tuple(sorted(out))


def matching(found: list[Instruction], ident: str, kwargs: dict) -> list[Instruction]:
    """The detected instructions that stand for one labelled instruction: same id and arguments, else same id."""
    same_id = [i for i in found if i.id == ident]
    exact = [i for i in same_id if _normal(i.arguments) == _normal(kwargs)]
    return exact or same_id


def item_prompt(item: dict) -> Prompt:
    return Prompt(str(item["key"]), (Message("user", item["prompt"]),))


def detection(items: list[dict]) -> dict:
    carried, found, exact, extra = Counter(), Counter(), Counter(), Counter()
    for item in items:
        detected = detect(item_prompt(item))
        for ident, kwargs in zip(item["instruction_id_list"], item["kwargs"], strict=True):
            carried[ident] += 1
            same = matching(detected, ident, kwargs)
            found[ident] += bool(same)
            exact[ident] += any(_normal(i.arguments) == _normal(kwargs) for i in same)
        extra.update(i.id for i in detected if i.id not in item["instruction_id_list"])
    return {
        "per_type": {
            t: {"labelled": carried[t], "found": found[t] / carried[t], "with_arguments": exact[t] / carried[t]}
            for t in sorted(carried, key=lambda t: -carried[t])
        },
        "found": sum(found.values()) / sum(carried.values()),
        "with_arguments": sum(exact.values()) / sum(carried.values()),
        "found_without_a_label": dict(extra.most_common()),
    }


def verdicts(items: dict[str, dict], answers: list[dict]) -> dict:
    """Per type and prompt level, the reward's verdicts against the official ones."""
    agree, total, followed = Counter(), Counter(), Counter()
    asked_in: dict[str, set] = defaultdict(set)
    followed_in: dict[str, set] = defaultdict(set)
    confusion: dict[str, Counter] = defaultdict(Counter)
    prompt_agree = prompt_total = share_equal = 0
    share_gap = 0.0
    detected: dict[str, list[Instruction]] = {}
    for answer in answers:
        item = items[answer["prompt_id"]]
        found = detected.setdefault(answer["prompt_id"], detect(item_prompt(item)))
        text = answer["text"]
        labelled = list(zip(item["instruction_id_list"], item["kwargs"], strict=True))
        official = [ifeval.follows(ident, kwargs, text, item["prompt"]) for ident, kwargs in labelled]
        for (ident, kwargs), passed in zip(labelled, official, strict=True):
            same = matching(found, ident, kwargs)
            mine = all(i.check(text) for i in same) if same else None
            total[ident] += 1
            agree[ident] += mine == passed
            followed[ident] += passed
            asked_in[ident].add(answer["prompt_id"])
            if passed:
                followed_in[ident].add(answer["prompt_id"])
            confusion[ident][f"reward {'missed' if mine is None else mine}, official {passed}"] += 1
        checks = [i.check(text) for i in found]
        prompt_total += 1
        prompt_agree += bool(checks) and all(checks) == all(official)
        rate = sum(checks) / len(checks) if checks else 0.0
        share_equal += abs(rate - sum(official) / len(official)) < 1e-9
        share_gap += abs(rate - sum(official) / len(official))
    return {
        "answers": prompt_total,
        "judgments": sum(total.values()),
        "prompt_level_agreement": prompt_agree / prompt_total,
        "instruction_share_equal": share_equal / prompt_total,
        "instruction_share_mean_gap": share_gap / prompt_total,
        "per_type": {
            t: {
                "judgments": total[t],
                "agreement": agree[t] / total[t],
                "followed": followed[t] / total[t],
                "prompts_with_one_followed": len(followed_in[t]) / len(asked_in[t]),
                "outcomes": dict(confusion[t]),
            }
            for t in sorted(total, key=lambda t: -total[t])
        },
        "lowest_type_agreement": min(agree[t] / total[t] for t in total),
    }


def false_detections() -> dict:
    sets = {
        "gsm8k_test": [json.loads(x)["question"] for x in (DATA / "gsm8k/test.jsonl").read_text().splitlines()],
        "svamp": [f"{d['Body']} {d['Question']}" for d in json.loads((DATA / "svamp/SVAMP.json").read_text())],
        "topical": TOPICAL,
    }
    out = {}
    for name, texts in sets.items():
        hits = [t for t in texts if detect(Prompt("x", (Message("user", t),)))]
        out[name] = {"prompts": len(texts), "with_a_detection": len(hits), "examples": hits[:3]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA / "ifeval" / "prompts.jsonl")
    parser.add_argument("--answers", type=Path, action="append", default=[], help="JSONL with prompt_id and text")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "instruction_agreement.json")
    args = parser.parse_args()
    items = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    by_id = {str(i["key"]): i for i in items}
    answers = []
    for path in args.answers:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        answers += [r for r in rows if str(r["prompt_id"]) in by_id]
    result = {
        "data": str(args.data),
        "answer_files": [str(p) for p in args.answers],
        "punkt": ifeval.PUNKT,
        "detection": detection(items),
        "verdicts": verdicts(by_id, answers) if answers else None,
        "no_instructions": false_detections(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    seen = result["detection"]
    print(f"detection: found {seen['found']:.1%}, with the labelled arguments {seen['with_arguments']:.1%}")
    if result["verdicts"]:
        v = result["verdicts"]
        print(
            f"{v['answers']} answers, {v['judgments']} judgments; prompt-level agreement "
            f"{v['prompt_level_agreement']:.1%}; lowest type {v['lowest_type_agreement']:.1%}"
        )
        print("| instruction type | labelled | found | with arguments | judgments | agreement | followed | prompts |")
        print("|---|---|---|---|---|---|---|---|")
        for t, row in v["per_type"].items():
            d = seen["per_type"][t]
            print(
                f"| {t} | {d['labelled']} | {d['found']:.0%} | {d['with_arguments']:.0%} | {row['judgments']} | "
                f"{row['agreement']:.1%} | {row['followed']:.0%} | {row['prompts_with_one_followed']:.0%} |"
            )
    for name, row in result["no_instructions"].items():
        print(f"no instructions, {name}: {row['with_a_detection']} of {row['prompts']} prompts get a detection")


if __name__ == "__main__":
    main()

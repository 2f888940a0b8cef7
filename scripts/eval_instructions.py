"""How well `rule:instructions` finds the instructions in real prompts: IFEval, whose labels say which are there.

    python scripts/eval_instructions.py [--data ../shared/data/ifeval/prompts.jsonl] [--out FILE]

For each IFEval instruction type that the detector covers: recall (share of the prompts carrying it in which the
detector finds the matching kind). Over all prompts: precision (share of detections that match a labelled
instruction) and the share of prompts with at least one detection. Then the other side: on prompts that carry no
instruction at all (GSM8K and SVAMP questions, and topical questions that merely mention "lowercase", "JSON" or
"commas"), the share in which the detector wrongly finds one. Writes JSON (default docs/results/instructions.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reward.instructions import detect  # noqa: E402
from tao.prompts import Message, Prompt  # noqa: E402

# IFEval instruction id -> the detector's kind (None: not covered by the detector)
KINDS = {
    "length_constraints:number_words": "words",
    "length_constraints:number_sentences": "sentences",
    "length_constraints:number_paragraphs": "paragraphs",
    "length_constraints:nth_paragraph_first_word": "paragraphs",
    "punctuation:no_comma": "no_comma",
    "keywords:frequency": "frequency",
    "keywords:letter_frequency": "frequency",
    "keywords:forbidden_words": "forbidden",
    "keywords:existence": "keywords",
    "startend:quotation": "quotation",
    "startend:end_checker": "end_with",
    "detectable_format:number_highlighted_sections": "highlights",
    "detectable_format:title": "title",
    "detectable_format:number_bullet_lists": "bullets",
    "detectable_format:multiple_sections": "sections",
    "detectable_format:constrained_response": "options",
    "detectable_format:json_format": "json",
    "detectable_content:number_placeholders": "placeholders",
    "detectable_content:postscript": "postscript",
    "change_case:english_lowercase": "lowercase",
    "change_case:english_capital": "uppercase",
    "combination:two_responses": "two_responses",
    "language:response_language": None,
    "change_case:capital_word_frequency": "capital_words",
    "combination:repeat_prompt": None,
}


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


def false_detections(root: Path) -> dict:
    data = root.parent / "shared/data"
    sets = {
        "gsm8k_test": [json.loads(x)["question"] for x in (data / "gsm8k/test.jsonl").read_text().splitlines()],
        "svamp": [f"{d['Body']} {d['Question']}" for d in json.loads((data / "svamp/SVAMP.json").read_text())],
        "topical": TOPICAL,
    }
    out = {}
    for name, texts in sets.items():
        hits = [t for t in texts if detect(Prompt("x", (Message("user", t),)))]
        out[name] = {"prompts": len(texts), "with_a_detection": len(hits), "examples": hits[:5]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/ifeval/prompts.jsonl"))
    parser.add_argument("--out", default=str(ROOT / "docs/results/instructions.json"))
    args = parser.parse_args()
    carried, found = Counter(), Counter()
    detections = matched = prompts_with_any = total = 0
    for line in Path(args.data).read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        total += 1
        kinds = [i.kind for i in detect(Prompt(str(item["key"]), (Message("user", item["prompt"]),)))]
        labelled = {KINDS[i] for i in item["instruction_id_list"]} - {None}
        prompts_with_any += bool(kinds)
        detections += len(kinds)
        matched += sum(k in labelled for k in kinds)
        for ident in item["instruction_id_list"]:
            carried[ident] += 1
            found[ident] += KINDS[ident] in kinds
    per_type = {
        i: {"prompts": carried[i], "recall": found[i] / carried[i], "covered": KINDS[i] is not None}
        for i in sorted(carried, key=lambda i: -carried[i])
    }
    covered = [i for i in carried if KINDS[i]]
    result = {
        "data": args.data,
        "prompts": total,
        "prompts_with_a_detection": prompts_with_any / total,
        "precision": matched / detections if detections else None,
        "recall_on_covered_types": sum(found[i] for i in covered) / sum(carried[i] for i in covered),
        "per_type": per_type,
        "false_detections": false_detections(ROOT),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for ident, row in per_type.items():
        print(
            f"{ident:48s} {row['prompts']:3d} prompts  recall {row['recall']:.0%}"
            + ("" if row["covered"] else "  (not covered)")
        )
    for name, row in result["false_detections"].items():
        print(
            f"no instructions, {name}: {row['with_a_detection']} of {row['prompts']} prompts get a detection "
            f"{row['examples'][:3]}"
        )
    print(
        f"precision {result['precision']:.1%}, recall on covered types {result['recall_on_covered_types']:.1%}, "
        f"prompts with a detection {result['prompts_with_a_detection']:.1%}"
    )


if __name__ == "__main__":
    main()

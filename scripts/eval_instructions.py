"""How well `rule:instructions` finds the instructions in real prompts: IFEval, whose labels say which are there.

    python scripts/eval_instructions.py [--data ../shared/data/ifeval/prompts.jsonl] [--out FILE]

For each IFEval instruction type that the detector covers: recall (share of the prompts carrying it in which the
detector finds the matching kind). Over all prompts: precision (share of detections that match a labelled
instruction) and the share of prompts with at least one detection. Writes JSON (default docs/results/instructions.json).
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
    per_type = {i: {"prompts": carried[i], "recall": found[i] / carried[i], "covered": KINDS[i] is not None}
                for i in sorted(carried, key=lambda i: -carried[i])}  # fmt: skip
    covered = [i for i in carried if KINDS[i]]
    result = {
        "data": args.data,
        "prompts": total,
        "prompts_with_a_detection": prompts_with_any / total,
        "precision": matched / detections if detections else None,
        "recall_on_covered_types": sum(found[i] for i in covered) / sum(carried[i] for i in covered),
        "per_type": per_type,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for ident, row in per_type.items():
        print(
            f"{ident:48s} {row['prompts']:3d} prompts  recall {row['recall']:.0%}"
            + ("" if row["covered"] else "  (not covered)")
        )
    print(f"precision {result['precision']:.1%}, recall on covered types {result['recall_on_covered_types']:.1%}, "
          f"prompts with a detection {result['prompts_with_a_detection']:.1%}")  # fmt: skip


if __name__ == "__main__":
    main()

"""`tao reward train | eval | label` with the tiny model: a learnable preference is learned and measured."""

import json

import pytest

from reward.pairs import Pair, label, load_pairs
from reward.scorer import RewardSet
from tao.commands.reward_training import spearman, split_by_prompt
from tao.core.errors import InputError
from tao.core.types import Message, Prompt
from tests.conftest import TINY, cli, write_jsonl
from tests.test_tracker import scalars

WORDS = ["apple", "river", "stone", "cloud", "green", "light", "music", "paper"]


def synthetic_pairs(n):
    """Chosen answers are lowercase, rejected ones the same words in capitals: a rule a reward model can learn."""
    rows = []
    for i in range(n):
        words = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(4))
        rows.append({"prompt": f"write four words, number {i}", "chosen": words, "rejected": words.upper()})
    return rows


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("rm")
    pairs = write_jsonl(root / "pairs.jsonl", synthetic_pairs(80))
    sets = ["reward_model.learning_rate=2e-3", "reward_model.epochs=3", "reward_model.batch_size=8"]
    sets.append("run.report_to=[tensorboard]")  # tensorboard: a dev extra
    result = cli(
        "reward",
        "train",
        "--pairs",
        pairs,
        "--out",
        root / "rm",
        "--model",
        tiny_model,
        "--quiet",
        *[x for s in sets for x in ("--set", s)],
    )
    assert result.exit_code == 0, result.output
    return root, result.output


def test_a_learnable_preference_is_learned_and_measured_on_held_out_prompts(trained):
    root, output = trained
    manifest = json.loads((root / "rm" / "manifest.json").read_text())
    assert manifest["kind"] == "reward-model" and manifest["data"]["held_out"] == 16  # 20% of 80 prompts
    accuracy = manifest["evaluation"]["pairwise_accuracy"]
    assert accuracy["n"] == 16 and accuracy["mean"] >= 0.9, accuracy
    assert "accuracy" in output and f"rm:{root / 'rm' / 'model'}" in output
    assert not list((root / "rm" / "model").glob("*.bin")) and (root / "rm" / "model" / "config.json").is_file()
    steps = manifest["budget"]["optimizer_steps"]  # run.report_to: the training's step logs, a step each
    assert [s for s, _ in scalars(root / "rm" / "tensorboard")["train/loss"]] == list(range(1, steps + 1))
    evaluated = cli(
        "reward",
        "eval",
        "--model",
        root / "rm" / "model",
        "--pairs",
        root / "pairs.jsonl",
        "--verifier",
        "rule:regex:^[a-z ]+$",
    )
    assert evaluated.exit_code == 0, evaluated.output
    result = json.loads(evaluated.output)
    assert result["chosen"]["mean"] > result["rejected"]["mean"] and result["accuracy"]["mean"] >= 0.9
    assert result["verifier"]["answers_scored"] == 160 and result["verifier"]["spearman"] > 0.5
    # the directory `tao reward train --out` wrote is itself accepted, by eval and as rm:DIR
    whole = cli("reward", "eval", "--model", root / "rm", "--pairs", root / "pairs.jsonl")
    assert whole.exit_code == 0, whole.output
    assert json.loads(whole.output)["accuracy"] == result["accuracy"]
    from reward.scorer import build_scorer

    assert build_scorer(f"rm:{root / 'rm'}").path == root / "rm" / "model"


def test_a_bfloat16_base_trains_a_reward_model_saved_in_float32(tiny_model, tmp_path, monkeypatch):
    """model.dtype=bfloat16: the classifier trains over a bfloat16 base (its LoRA weights in float32 on a CPU),
    learns the preference, and is merged into a float32 model."""
    from safetensors.torch import load_file

    import tao.commands.reward_training

    loads = []
    real = tao.commands.reward_training.load_kwargs
    monkeypatch.setattr(tao.commands.reward_training, "load_kwargs", lambda *a: loads.append(a) or real(*a))
    pairs = write_jsonl(tmp_path / "pairs.jsonl", synthetic_pairs(80))
    sets = [
        "model.dtype=bfloat16",
        "reward_model.learning_rate=2e-3",
        "reward_model.epochs=3",
        "reward_model.batch_size=8",
    ]
    result = cli(
        "reward",
        "train",
        "--pairs",
        pairs,
        "--out",
        tmp_path / "rm",
        "--model",
        tiny_model,
        "--quiet",
        *[x for s in sets for x in ("--set", s)],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "rm" / "manifest.json").read_text())
    assert loads == [("none", "bfloat16"), ("none", "float32")]  # trained over bfloat16, merged into float32
    assert manifest["evaluation"]["pairwise_accuracy"]["mean"] >= 0.9, manifest["evaluation"]
    weights = load_file(tmp_path / "rm" / "model" / "model.safetensors")
    assert {str(w.dtype) for w in weights.values()} == {"torch.float32"}


def test_the_reward_model_loads_in_a_tao_run_and_in_trl(trained, tiny_model, prompts_file, tmp_path):
    root, _ = trained
    model_dir = root / "rm" / "model"
    args = ["run", "--prompts", prompts_file, "--model", tiny_model, "--run-dir", tmp_path / "run", "--quiet"]
    args += [x for s in TINY if not s.startswith("reward") for x in ("--set", s)] + ["--reward", f"rm:{model_dir}"]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "run/round-0001/candidates.jsonl").read_text().splitlines()]
    assert all(isinstance(r["scores"][f"rm:{model_dir}"], float) for r in rows)

    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    trainer = GRPOTrainer(
        model=str(tiny_model),
        reward_funcs=str(model_dir),
        args=GRPOConfig(output_dir=str(tmp_path / "trl"), use_cpu=True, bf16=False, report_to="none"),
        train_dataset=Dataset.from_list([{"prompt": "hi"}] * 8),
    )
    head = trainer.reward_funcs[0].score.weight
    from safetensors.torch import load_file

    saved = load_file(next(model_dir.glob("*.safetensors")))
    assert head.shape[0] == 1 and (head.detach() - saved["score.weight"]).abs().max() == 0


def test_label_makes_the_pairs_a_hand_computed_example_expects():
    prompts = {"a": Prompt("a", (Message("user", "answer in lowercase"),)), "b": Prompt("b", (Message("user", "x"),))}
    rows = [
        {"prompt_id": "a", "text": "all lowercase here"},  # instructions 1.0
        {"prompt_id": "a", "text": "Not Lowercase"},  # 0.0
        {"prompt_id": "a", "text": "also lowercase"},  # 1.0
        {"prompt_id": "b", "text": "anything"},  # no instruction: no opinion
    ]
    pairs, stats = label(prompts, rows, RewardSet(("rule:instructions",)), margin=0.5, per_prompt=2)
    assert [(p["chosen"], p["rejected"], p["margin"]) for p in pairs] == [("all lowercase here", "Not Lowercase", 1.0)]
    assert stats == {"prompts": 2, "candidates": 4, "unscored": 1, "pairs": 1, "prompts_with_a_pair": 1}
    assert label(prompts, rows, RewardSet(("rule:instructions",)), margin=1.5, per_prompt=2)[0] == []


def test_label_command_reads_a_rounds_candidates_and_writes_loadable_pairs(tiny_model, prompts_file, tmp_path):
    from tests.test_loop import tao_run

    assert tao_run(prompts_file, tiny_model, tmp_path / "run").exit_code == 0
    result = cli(
        "reward",
        "label",
        "--rollouts",
        tmp_path / "run/round-0001/candidates.jsonl",
        "--by",
        "tests.rewards:letter_a",
        "--margin",
        "1",
        "--out",
        tmp_path / "pairs.jsonl",
    )
    assert result.exit_code == 0, result.output
    _, pairs = load_pairs(tmp_path / "pairs.jsonl")
    assert pairs and all(p.chosen.count("a") >= p.rejected.count("a") + 1 for p in pairs)


@pytest.mark.parametrize(
    "line, problem, field",
    [
        ({"prompt": "p", "chosen": "a"}, 'missing "rejected"', "rejected"),
        (
            {"prompt": "p", "chosen": "same", "rejected": " same "},
            "chosen and rejected are the same answer",
            "rejected",
        ),
        ({"prompt": "p", "chosen": "", "rejected": "b"}, "expected a non-empty answer", "chosen"),
        ({"chosen": "a", "rejected": "b"}, 'missing "prompt"', "prompt"),
        ({"prompt": "p", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"}, "must end with", "chosen[-1]"),
    ],
)
def test_bad_pairs_are_one_line_errors(tmp_path, line, problem, field):
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "ok", "chosen": "a", "rejected": "b"}, line])
    with pytest.raises(InputError) as err:
        load_pairs(path)
    assert err.value.line == 2 and err.value.field == field and problem in str(err.value)


def test_chat_form_pairs_and_the_split_by_prompt(tmp_path):
    chat = {
        "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
        "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}],
    }
    _, [pair] = load_pairs(write_jsonl(tmp_path / "p.jsonl", [chat]))
    assert (pair.prompt.text, pair.chosen, pair.rejected) == ("q", "good", "bad")
    pairs = [Pair(Prompt(f"p{i % 10}", (Message("user", f"q{i % 10}"),)), "a", "b") for i in range(40)]
    train, held = split_by_prompt(pairs, 0.2, seed=0)
    assert len(held) == 8 and not {p.prompt.text for p in train} & {p.prompt.text for p in held}


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None

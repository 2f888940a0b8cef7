import itertools

import numpy as np
import pytest
import torch

import tao.update.grpo
from rollouts.transformers_engine import TransformersEngine
from tao.core.config import Config, ModelConfig
from tao.core.config_file import replace
from tao.core.console import Console
from tao.core.model import BaseModel, Policy, chat_token_ids
from tao.core.types import Message, Prompt, Sampling
from tao.update.grpo import Group, grpo_update, most_spread, select
from tao.update.optimizer import OPTIMIZER_FILE, carry_optimizer

CONFIG = replace(
    Config(),
    update={"learning_rate": 1e-3, "prompts_per_step": 2},
    rollout={"num_candidates": 4, "max_new_tokens": 8},
)


@pytest.fixture
def policy(tiny_model):
    return Policy(BaseModel("tiny", tiny_model, "x"), Config().model, Config().lora)


def make_groups(policy, rewards_per_group):
    prompts = [Prompt(f"q{i}", (Message("user", f"question {i}"),)) for i in range(len(rewards_per_group))]
    cands = TransformersEngine(policy, 16, Console(True)).generate(prompts, Sampling(4, 1.0, 1.0, 8, seed=0), None)
    return [
        Group(
            p,
            tuple(chat_token_ids(policy.tokenizer, p)),
            tuple(c.token_ids for c in cands[4 * i : 4 * i + 4]),
            tuple(rewards_per_group[i]),
        )
        for i, p in enumerate(prompts)
    ]


def snapshot(model, lora):
    return {n: p.detach().clone() for n, p in model.named_parameters() if ("lora_" in n) == lora}


def test_update_trains_lora_on_the_stored_candidates_and_leaves_the_base_alone(policy, tmp_path, monkeypatch):
    groups = make_groups(policy, [[0.0, 1.0, 0.0, 1.0], [0.2, 0.2, 0.9, 0.1]])
    seen = []  # (completion ids, reward) pairs as trl hands them to the reward function

    def recording(prompts, completions, tao_reward, completion_ids, **kwargs):
        seen.extend(zip(map(tuple, completion_ids), tao_reward, strict=True))
        return list(tao_reward)

    monkeypatch.setattr(tao.update.grpo, "tao_reward", recording)
    with policy.attached(None, trainable=True, seed=0) as model:
        base_before, lora_before = snapshot(model, lora=False), snapshot(model, lora=True)

        def no_generation(*args, **kwargs):
            raise AssertionError("the update must replay the explored candidates, not generate")

        model.generate = no_generation
        stats = grpo_update(model, policy.tokenizer, groups, CONFIG, tmp_path / "scratch", Console(True))
        base_after, lora_after = snapshot(model, lora=False), snapshot(model, lora=True)
        del model.generate
    assert stats["steps"] == 1 and stats["groups_trained"] == 2
    # trl trained on every stored candidate once, each with its own score
    stored = [(c, r) for g in groups for c, r in zip(g.completions, g.rewards, strict=True)]
    assert sorted(seen) == sorted(stored)
    assert stats["reward"] == pytest.approx(sum(sum(g.rewards) for g in groups) / 8, abs=1e-5)
    changed = [n for n in lora_before if not torch.equal(lora_before[n], lora_after[n])]
    assert any("lora_B" in n for n in changed) and len(changed) >= len(lora_before) // 2
    assert all(torch.equal(base_before[n], base_after[n]) for n in base_before)
    assert not any(".ref." in n for n in snapshot(model, lora=True))  # trl's reference copy is gone


def test_groups_without_signal_are_left_out(policy, tmp_path):
    groups = make_groups(policy, [[0.5] * 4, [0.0, 1.0, None, 1.0], [None] * 4])
    with policy.attached(None, trainable=True, seed=0) as model:
        stats = grpo_update(model, policy.tokenizer, groups, CONFIG, tmp_path / "s", Console(True))
    assert (stats["groups_trained"], stats["groups_skipped"], stats["steps"]) == (1, 2, 1)


@pytest.mark.parametrize("seed", range(20))
def test_most_spread_is_the_maximum_variance_subset(seed):
    rng = np.random.default_rng(seed)
    scores = [float(x) for x in rng.choice([0.0, 0.25, 0.5, 0.75, 1.0, 1.5], size=8)]
    for size in (2, 3, 4, 6):
        chosen = most_spread(scores, size)
        assert len(chosen) == size == len(set(chosen)) and list(chosen) == sorted(chosen)
        best = max(np.var([scores[i] for i in c]) for c in itertools.combinations(range(8), size))
        assert np.var([scores[i] for i in chosen]) == pytest.approx(best)


def test_most_spread_keeps_everything_when_asked_for_all_and_fills_with_unscored_last():
    assert most_spread([0.1, 0.9, 0.5], 0) == (0, 1, 2)
    assert most_spread([None, 0.2, None, 0.8], 3) == (0, 1, 3)
    assert most_spread([0.0, 1.0, 0.0, 1.0, 0.5, 0.5], 2) in {(0, 1), (0, 3), (1, 2), (2, 3)}


def test_select_skips_groups_within_min_spread_and_cuts_the_rest_to_group_size(policy):
    groups = make_groups(policy, [[1.0, 0.99, 0.98, 1.0], [0.0, 1.0, 0.5, 0.5], [None, None, None, 0.3]])
    config = replace(CONFIG, update={"group_size": 2, "min_spread": 0.1})
    kept, skipped = select(groups, config)
    assert skipped == 2 and len(kept) == 1  # repetition-level noise and a lone score carry no signal
    assert kept[0].rewards == (0.0, 1.0) and kept[0].completions == groups[1].completions[:2]


def test_update_trains_only_the_most_spread_candidates_of_each_group(policy, tmp_path, monkeypatch):
    groups = make_groups(policy, [[0.2, 0.9, 0.5, 0.1], [1.0, 0.6, 0.0, 0.7]])
    seen = []

    def recording(prompts, completions, tao_reward, completion_ids, **kwargs):
        seen.extend(zip(map(tuple, completion_ids), tao_reward, strict=True))
        return list(tao_reward)

    monkeypatch.setattr(tao.update.grpo, "tao_reward", recording)
    config = replace(CONFIG, update={"group_size": 2})
    with policy.attached(None, trainable=True, seed=0) as model:
        stats = grpo_update(model, policy.tokenizer, groups, config, tmp_path / "s", Console(True))
    assert (stats["groups_trained"], stats["sequences_trained"], stats["steps"]) == (2, 4, 1)
    expected = [(groups[0].completions[i], groups[0].rewards[i]) for i in (1, 3)]
    expected += [(groups[1].completions[i], groups[1].rewards[i]) for i in (0, 2)]
    assert sorted(seen) == sorted(expected)


def test_no_signal_at_all_trains_nothing(policy, tmp_path):
    groups = make_groups(policy, [[1.0] * 4, [0.0] * 4])
    with policy.attached(None, trainable=True, seed=0) as model:
        before = snapshot(model, lora=True)
        stats = grpo_update(model, policy.tokenizer, groups, CONFIG, tmp_path / "s", Console(True))
        assert all(torch.equal(before[n], p) for n, p in snapshot(model, lora=True).items())
    assert stats == {"groups_trained": 0, "groups_skipped": 2, "sequences_trained": 0, "steps": 0}


def test_several_passes_reuse_the_replayed_candidates_without_generating_again(policy, tmp_path, monkeypatch):
    groups = make_groups(policy, [[0.0, 1.0, 0.0, 1.0], [0.2, 0.2, 0.9, 0.1], [1.0, 0.0, 0.0, 0.0], [0, 0, 0, 1.0]])
    calls = []
    real = tao.update.grpo._Replay.__call__

    def counting(self, prompts, trainer):
        calls.append(len(prompts))
        return real(self, prompts, trainer)

    monkeypatch.setattr(tao.update.grpo._Replay, "__call__", counting)
    steps = {}
    for epochs in (1, 3):
        calls.clear()
        config = replace(CONFIG, update={"epochs": epochs})
        with policy.attached(None, trainable=True, seed=0) as model:
            model.generate = None  # any generation would fail
            steps[epochs] = grpo_update(model, policy.tokenizer, groups, config, tmp_path / "s", Console(True))["steps"]
            del model.generate
        assert sum(calls) == 4 * 4  # every candidate replayed exactly once, whatever the number of passes
    assert steps == {1: 2, 3: 6}


def test_the_kl_reference_of_a_continued_adapter_is_the_base_model(policy, tmp_path, monkeypatch):
    """trl would keep a frozen copy of the round's starting adapter as the reference; tao removes it so that
    the KL term (adapters disabled) holds every round to the base model."""
    groups = make_groups(policy, [[0.0, 1.0, 0.0, 1.0], [0.2, 0.2, 0.9, 0.1]])
    with policy.attached(None, trainable=True, seed=0) as model:
        model.save_pretrained(tmp_path / "parent")  # a first round's adapter
    adapters_seen = []

    def recording(prompts, completions, tao_reward, **kwargs):
        adapters_seen.append(sorted(trainer_model.peft_config))
        return list(tao_reward)

    monkeypatch.setattr(tao.update.grpo, "tao_reward", recording)
    config = replace(CONFIG, update={"beta": 0.5})
    with policy.attached(tmp_path / "parent", trainable=True, seed=0) as trainer_model:
        stats = grpo_update(trainer_model, policy.tokenizer, groups, config, tmp_path / "s", Console(True))
    assert stats["steps"] == 1 and adapters_seen == [["default"]] and stats["kl"] is not None


def test_a_bfloat16_base_trains_its_adapter_in_float32_and_saves_it_for_any_dtype(tiny_model, tmp_path):
    config = replace(Config(), model={"dtype": "bfloat16"})
    policy = Policy(BaseModel("tiny", tiny_model, "x"), config.model, config.lora)
    groups = make_groups(policy, [[0.0, 1.0, 0.0, 1.0], [0.2, 0.2, 0.9, 0.1]])
    with policy.attached(None, trainable=True, seed=0) as model:
        base_before, lora_before = snapshot(model, lora=False), snapshot(model, lora=True)
        assert {p.dtype for p in base_before.values()} == {torch.bfloat16}
        stats = grpo_update(
            model,
            policy.tokenizer,
            groups,
            replace(CONFIG, model={"dtype": "bfloat16"}),
            tmp_path / "s",
            Console(True),
            save_to=tmp_path / "adapter",
        )
        lora_after = snapshot(model, lora=True)
        assert all(torch.equal(p, snapshot(model, lora=False)[n]) for n, p in base_before.items())
    assert stats["steps"] == 1 and stats["kl"] is not None
    assert {p.dtype for p in lora_after.values()} == {torch.float32}
    assert any(not torch.equal(lora_before[n], lora_after[n]) for n in lora_before if "lora_B" in n)
    # the saved adapter loads onto a float32 base and changes what it computes
    fp32 = Policy(BaseModel("tiny", tiny_model, "x"), ModelConfig(dtype="float32"), Config().lora)
    ids = torch.tensor([list(groups[0].prompt_ids)])
    with torch.no_grad(), fp32.attached(None) as model:
        plain = model(ids.to(model.device)).logits
    with torch.no_grad(), fp32.attached(tmp_path / "adapter") as model:
        assert next(model.parameters()).dtype == torch.float32
        tuned = model(ids.to(model.device)).logits
    assert not torch.allclose(plain, tuned)


@pytest.mark.parametrize("scale", [True, False])
def test_scale_rewards_decides_whether_a_small_spread_pushes_as_hard_as_a_big_one(policy, tmp_path, monkeypatch, scale):
    """Advantages as trl trains with them: divided by each group's std (every group pushes alike), or left in the
    reward's units (a group split by 0.2 pushes a fifth as hard as one split by 1.0)."""
    from trl import GRPOTrainer

    groups = make_groups(policy, [[0.0, 0.2, 0.0, 0.2], [0.0, 1.0, 0.0, 1.0]])
    advantages = []
    real = GRPOTrainer._generate_and_score_completions

    def recording(self, inputs):
        out = real(self, inputs)
        advantages.extend(out["advantages"].tolist())
        return out

    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", recording)
    config = replace(CONFIG, update={"scale_rewards": scale})
    with policy.attached(None, trainable=True, seed=0) as model:
        grpo_update(model, policy.tokenizer, groups, config, tmp_path / "s", Console(True))
    assert len(advantages) == 8  # every trained candidate, once
    by_size = sorted(abs(a) for a in advantages)
    small, large = by_size[:4], by_size[4:]
    if scale:
        assert small == pytest.approx(large, rel=1e-3) and large[0] == pytest.approx(0.866, abs=1e-3)  # 0.5 / std
    else:
        assert small == pytest.approx([0.1] * 4, abs=1e-6) and large == pytest.approx([0.5] * 4, abs=1e-6)


def test_a_continued_update_carries_the_optimizer_state_saved_with_its_parent(policy, tmp_path):
    """Rounds are stretches of one training run: Adam's moments and step count go on from the parent's, so the
    continued update takes other steps than a fresh optimizer from the same adapter and data would."""
    from safetensors.torch import load_file, save_file

    groups = make_groups(policy, [[0.0, 1.0, 0.0, 1.0], [0.2, 0.2, 0.9, 0.1]])
    with policy.attached(None, trainable=True, seed=0) as model:
        first = grpo_update(model, policy.tokenizer, groups, CONFIG, tmp_path / "s", Console(True), tmp_path / "r1")
        names = {n for n, p in model.named_parameters() if p.requires_grad}
    saved = load_file(tmp_path / "r1" / OPTIMIZER_FILE)
    assert {k.rpartition("|")[0] for k in saved} == names
    assert {saved[f"{n}|step"].item() for n in names} == {1.0} and first["optimizer"] == "fresh"

    def continued(parent, out):
        with policy.attached(tmp_path / "r1", trainable=True, seed=0) as model:
            stats = grpo_update(
                model, policy.tokenizer, groups, CONFIG, tmp_path / out, Console(True), tmp_path / out / "a", parent
            )
            steps = {
                v.item() for k, v in load_file(tmp_path / out / "a" / OPTIMIZER_FILE).items() if k.endswith("|step")
            }
            return stats, snapshot(model, lora=True), steps

    carried, after_carried, carried_steps = continued(tmp_path / "r1", "s2")
    fresh, after_fresh, fresh_steps = continued(None, "s3")
    assert (carried["optimizer"], carried_steps, fresh["optimizer"], fresh_steps) == ("carried", {2.0}, "fresh", {1.0})
    assert any(not torch.equal(after_carried[n], after_fresh[n]) for n in after_fresh)
    # a saved state that does not fit the adapter (here: one parameter missing) is not carried
    save_file(
        {k: v for k, v in saved.items() if not k.startswith(sorted(names)[0] + "|")}, tmp_path / "r1" / OPTIMIZER_FILE
    )
    assert continued(tmp_path / "r1", "s4")[0]["optimizer"] == "fresh"


def test_a_resumed_update_keeps_its_checkpoint_optimizer_state_over_the_parents(policy, tmp_path):
    """A killed update resumes with the optimizer state of its own checkpoint (transformers restores it before
    training begins); the parent's saved state must not overwrite it. An empty optimizer gets the parent's."""
    groups = make_groups(policy, [[0.0, 1.0, 0.0, 1.0], [0.2, 0.2, 0.9, 0.1]])
    with policy.attached(None, trainable=True, seed=0) as model:
        grpo_update(model, policy.tokenizer, groups, CONFIG, tmp_path / "s", Console(True), tmp_path / "r1")
    with policy.attached(tmp_path / "r1", trainable=True, seed=0) as model:
        params = [p for p in model.parameters() if p.requires_grad]
        restored = torch.optim.AdamW(params)
        checkpoint = {"step": torch.tensor(7.0), "exp_avg": torch.ones_like(params[0])}
        restored.state[params[0]] = dict(checkpoint)  # as loaded from the update's own checkpoint
        empty = torch.optim.AdamW(params)
        outcomes = []
        for optimizer in (restored, empty):
            carry = carry_optimizer(model, tmp_path / "r1" / OPTIMIZER_FILE)
            carry.on_train_begin(None, None, None, optimizer=optimizer)
            outcomes.append(carry.outcome)
    assert outcomes == ["resumed", "carried"]
    assert len(restored.state) == 1 and restored.state[params[0]]["step"].item() == 7.0
    assert torch.equal(restored.state[params[0]]["exp_avg"], checkpoint["exp_avg"])
    assert len(empty.state) == len(params) and {s["step"].item() for s in empty.state.values()} == {1.0}


def test_rft_fine_tunes_on_each_groups_best_answer_only(policy, tmp_path, monkeypatch):
    from tao.update.rft import best_answers, rft_update

    groups = make_groups(policy, [[0.2, 0.9, 0.5, 0.9], [0.5] * 4, [None, 0.0, 1.0, None]])
    chosen = best_answers(groups, 0.1)
    assert [(g.prompt.id, i) for g, i in chosen] == [("q0", 1), ("q2", 2)]  # no signal in q1; first best on a tie
    config = replace(CONFIG, update={"method": "rft"}, sft={"batch_size": 2, "learning_rate": 1e-3})
    with policy.attached(None, trainable=True, seed=0) as model:
        base_before, lora_before = snapshot(model, lora=False), snapshot(model, lora=True)
        model.generate = None  # any generation would fail
        stats = rft_update(model, policy.tokenizer, groups, config, tmp_path / "s", Console(True), tmp_path / "a")
        del model.generate
        lora_after, base_after = snapshot(model, lora=True), snapshot(model, lora=False)
    assert (stats["groups_trained"], stats["groups_skipped"], stats["steps"]) == (2, 1, 1)
    assert stats["mean_reward_trained"] == pytest.approx(0.95)
    assert any(not torch.equal(lora_before[n], lora_after[n]) for n in lora_before)
    assert all(torch.equal(base_before[n], base_after[n]) for n in base_before)
    assert (tmp_path / "a" / "adapter_model.safetensors").is_file() and (tmp_path / "a" / OPTIMIZER_FILE).is_file()


def test_rft_loss_is_on_the_answer_tokens_as_generated(policy, tmp_path, monkeypatch):
    import trl

    from tao.update.rft import IGNORE, rft_update

    groups = make_groups(policy, [[0.0, 1.0, 0.0, 0.0]])
    seen = {}

    class Recording(trl.SFTTrainer):
        def __init__(self, *args, train_dataset, **kwargs):
            seen["rows"] = list(train_dataset)
            super().__init__(*args, train_dataset=train_dataset, **kwargs)

    monkeypatch.setattr(trl, "SFTTrainer", Recording)
    config = replace(CONFIG, update={"method": "rft"})
    with policy.attached(None, trainable=True, seed=0) as model:
        rft_update(model, policy.tokenizer, groups, config, tmp_path / "s", Console(True))
    (row,) = seen["rows"]
    g = groups[0]
    assert row["input_ids"] == list(g.prompt_ids) + list(g.completions[1])
    assert row["labels"] == [IGNORE] * len(g.prompt_ids) + list(g.completions[1])


def test_update_trl_fields_reach_grpo_and_wrong_ones_are_named(tmp_path):
    from tao.core.errors import InputError
    from tao.update.grpo import check_trl_settings, grpo_args

    config = replace(CONFIG, update={"trl": {"max_grad_norm": 0.25, "warmup_steps": 2}})
    check_trl_settings(config.update.trl)
    args = grpo_args(config, 4, 1, tmp_path)
    assert (args.max_grad_norm, args.warmup_steps, args.learning_rate) == (0.25, 2, CONFIG.update.learning_rate)
    with pytest.raises(InputError, match=r"update\.trl\.learning_rate: set by tao from update\.learning_rate"):
        check_trl_settings({"learning_rate": 1.0})
    with pytest.raises(InputError, match=r"update\.trl\.max_grad_nrom: not a field of trl's GRPOConfig"):
        check_trl_settings({"max_grad_nrom": 1.0})
    with pytest.raises(InputError, match="update.trl: trl's GRPOConfig refuses it"):
        check_trl_settings({"lr_scheduler_type": "no-such-schedule"})


@pytest.mark.parametrize(
    "setting, cuda, on", [("auto", True, True), ("auto", False, False), ("on", False, True), ("off", True, False)]
)
def test_gradient_checkpointing_is_on_by_default_only_with_a_gpu(setting, cuda, on):
    from tao.update.grpo import checkpointing

    assert checkpointing(setting, cuda)["gradient_checkpointing"] is on


def test_gradient_checkpointing_keeps_fewer_activations_and_gives_the_same_gradients(policy):
    """What gradient_checkpointing: on buys under LoRA (non-reentrant, as tao sets it): the same gradients, and the
    forward pass keeps a fraction of the activations for the backward."""
    ids = torch.randint(5, 300, (4, 48))
    results = {}
    for on in (False, True):
        with policy.attached(None, trainable=True, seed=0) as model:
            if on:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.train()
            kept = []

            def pack(t, kept=kept):
                kept.append(t.numel() * t.element_size())
                return t

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
            results[on] = (sum(kept), grads)
            model.zero_grad()
            if on:
                model.gradient_checkpointing_disable()
    (plain_bytes, plain), (ckpt_bytes, ckpt) = results[False], results[True]
    assert ckpt_bytes < 0.6 * plain_bytes
    assert plain.keys() == ckpt.keys() and all(torch.allclose(plain[n], ckpt[n], atol=1e-6) for n in plain)


def test_a_resumed_update_takes_the_newest_whole_checkpoint_and_removes_partial_ones(tmp_path):
    """A kill (or a full disk) inside a save leaves checkpoint-N without its trainer_state.json, written last, or
    with half of it; resuming from it would fail every rerun."""
    from tao.update.grpo import last_complete_checkpoint

    scratch = tmp_path / ".trainer"
    assert last_complete_checkpoint(scratch) is None
    for step, state in ((10, '{"global_step": 10}'), (20, None), (30, '{"global_st')):
        (scratch / f"checkpoint-{step}").mkdir(parents=True)
        (scratch / f"checkpoint-{step}" / "adapter_model.safetensors").write_bytes(b"x")
        if state is not None:
            (scratch / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    assert last_complete_checkpoint(scratch) == str(scratch / "checkpoint-10")
    assert sorted(p.name for p in scratch.iterdir()) == ["checkpoint-10"]


@pytest.fixture
def rows(monkeypatch):
    """The rows each call of trl's fused LM head projects, appended as the update runs."""
    import trl.trainer.utils

    real = trl.trainer.utils._ChunkedLogProbFunction.apply
    seen: list[int] = []

    def counting(hidden, *args):
        seen.append(hidden.shape[0])
        return real(hidden, *args)

    monkeypatch.setattr(trl.trainer.utils._ChunkedLogProbFunction, "apply", counting)
    return seen


@pytest.mark.parametrize("method", ["grpo", "rft"])
def test_the_lm_head_scores_only_the_completion_tokens_and_trains_the_same(policy, tmp_path, monkeypatch, method, rows):
    """Off GPUs trl projects every position through the LM head (prompt and padding too); tao has it project only
    the labelled ones: fewer rows, and the same trained adapter."""
    import contextlib

    import tao.update.rft
    from tao.update.rft import rft_update

    groups = make_groups(policy, [[0.0, 1.0, 0.0, 1.0], [0.2, 0.2, 0.9, 0.1]])
    update = grpo_update if method == "grpo" else rft_update
    config = replace(CONFIG, update={"method": method, "beta": 0.0}, sft={"batch_size": 2, "learning_rate": 1e-3})
    trained, projected = {}, {}
    for compact in (True, False):
        if not compact:  # trl's own choice on a CPU
            monkeypatch.setattr(tao.update.grpo, "completion_tokens_only", contextlib.nullcontext)
            monkeypatch.setattr(tao.update.rft, "completion_tokens_only", contextlib.nullcontext)
        rows.clear()
        with policy.attached(None, trainable=True, seed=0) as model:
            update(model, policy.tokenizer, groups, config, tmp_path / f"s{compact}", Console(True))
            trained[compact] = snapshot(model, lora=True)
        projected[compact] = list(rows)
    if method == "grpo":  # one group a micro-batch: exactly its completions' tokens, its prompt's not
        assert projected[True] == [sum(map(len, g.completions)) for g in groups]
        assert all(full > mine for full, mine in zip(projected[False], projected[True], strict=True))
    else:  # one batch of the two best answers
        assert projected[True] == [len(groups[0].completions[1]) + len(groups[1].completions[2])]
        assert projected[False][0] > projected[True][0]
    for name, weights in trained[True].items():
        torch.testing.assert_close(weights, trained[False][name], atol=1e-6, rtol=1e-5)


def test_tao_sft_projects_only_the_answer_tokens_and_trains_the_same(tiny_model, tmp_path, monkeypatch, rows):
    """`tao sft` takes the same compact LM head as the run's updates: fewer rows, the same adapter."""
    import contextlib

    from safetensors.torch import load_file

    import tao.commands.sft
    from tao.core.model import load_tokenizer

    base = BaseModel("tiny", tiny_model, "x")
    examples = [
        (Prompt("a", (Message("user", "say hello to the whole team please"),)), "hello team"),
        (Prompt("b", (Message("user", "count to three"),)), "one two three four five six"),
    ]
    config = replace(Config(), sft={"batch_size": 2, "learning_rate": 1e-3})
    trained, projected = {}, {}
    for compact in (True, False):
        if not compact:  # trl's own choice on a CPU
            monkeypatch.setattr(tao.commands.sft, "completion_tokens_only", contextlib.nullcontext)
        rows.clear()
        torch.manual_seed(0)  # the adapter's initial weights
        adapter = tmp_path / f"adapter-{compact}"
        tao.commands.sft._train(examples, base, config, tmp_path / f"s{compact}", adapter, Console(True))
        projected[compact], trained[compact] = list(rows), load_file(adapter / "adapter_model.safetensors")
    (mine,), (full,) = projected[True], projected[False]
    tokenizer = load_tokenizer(base, config.model)
    answers = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for _, a in examples)
    assert answers <= mine < full  # the answers (and their end-of-turn markup), not the prompts and padding
    for name, weights in trained[True].items():
        torch.testing.assert_close(weights, trained[False][name], atol=1e-6, rtol=1e-5)

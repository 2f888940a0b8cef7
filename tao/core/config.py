"""Run configuration: one frozen dataclass a section, each field's default, meaning and valid range.

tao/core/config_file.py loads them: the defaults below < a YAML file (``--config``) < ``--set section.key=value``.
``configs/default.yaml`` is the documented reference of every field; a test keeps it equal to these defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from tao.core.specs import REPAIRING_SCORERS, parse_strategy, split_weight


class Invalid(ValueError):
    """A field value out of its range; the loader adds the dotted key and the source."""

    def __init__(self, name: str, problem: str):
        self.name = name
        super().__init__(problem)


TRACKERS = ("tensorboard", "trackio", "wandb", "mlflow")  # run.report_to: each name is also its package's


def _require(ok: bool, name: str, problem: str) -> None:
    if not ok:
        raise Invalid(name, problem)


@dataclass(frozen=True)
class ModelConfig:
    """The base model."""

    name: str = "default"  # "default" = embedded SmolLM2-135M-Instruct, a local model dir, or a hub id
    quantize: Literal["none", "nf4"] = "none"  # nf4: 4-bit base with bitsandbytes (QLoRA)
    # Compute precision of generation and training. auto: bfloat16 on GPUs, float32 on CPUs. On a CPU bfloat16 pays
    # only with AMX-BF16 (Sapphire Rapids and later; `tao doctor` says).
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    trust_remote_code: bool = False  # run Python code shipped with the model; off unless you trust it


@dataclass(frozen=True)
class LoraConfig:
    """The shape of the trained adapter."""

    rank: int = 16
    alpha: int = 32
    target_modules: str = "all-linear"  # peft's target_modules: "all-linear" or comma-separated names

    def __post_init__(self) -> None:
        _require(self.rank >= 1, "rank", "must be >= 1")
        _require(self.alpha >= 1, "alpha", "must be >= 1")


@dataclass(frozen=True)
class DataConfig:
    """How the prompts file is split and sampled."""

    holdout: float = 0.2  # share of prompts held out for evaluation, never trained on
    prompts_per_round: int = 32  # training prompts explored per round; 0 = all of them
    max_prompt_tokens: int = 1024  # longer prompts (after the chat template) are skipped and counted
    # Where the logs keep what tao reads, when not under its own names: {prompt: question, id: request_id,
    # messages: request.body.messages} (a field, or a dotted path into nested objects)
    fields: dict[str, Any] = field(default_factory=dict)
    # A record that is not a valid prompt: stop (one line naming it, nothing written) or skip it (counted by reason,
    # with its first line numbers, in the run log and run.json)
    on_invalid: Literal["stop", "skip"] = "stop"

    def __post_init__(self) -> None:
        _require(0.0 <= self.holdout < 1.0, "holdout", "must be in [0, 1)")
        _require(self.prompts_per_round >= 0, "prompts_per_round", "must be >= 0")
        _require(self.max_prompt_tokens >= 1, "max_prompt_tokens", "must be >= 1")
        for name, where in self.fields.items():
            _require(name in ("prompt", "messages", "id"), "fields", f"{name!r}: only prompt, messages, id are mapped")
            _require(isinstance(where, str) and bool(where.strip()), "fields", f"{name!r}: expected a field name")


@dataclass(frozen=True)
class RolloutConfig:
    """Exploration: how candidate answers are generated."""

    # auto: vLLM on a CUDA GPU when it is installed, else transformers (`tao doctor` says which and why);
    # vllm-server: a `vllm serve` started by you, at server_url
    engine: Literal["auto", "vllm", "transformers", "vllm-server"] = "auto"
    num_candidates: int = 8  # candidates per prompt (the GRPO group)
    # How the group is explored, as SPEC[=SHARE]: sample, ladder[:LOW-HIGH], think, guide:FILE, refine[:ROUNDS],
    # best_of[:M], exemplars[:K], greedy, repair (rollouts/strategies.py); shares of num_candidates, at least one
    # candidate each (greedy: exactly one)
    strategies: tuple[str, ...] = ("sample",)
    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 128  # also the answer budget at evaluation
    batch_size: int = 32  # sequences decoded together (vLLM: max_num_seqs)
    gpu_memory_utilization: float = 0.35  # vLLM on a GPU: its share of GPU memory; the update gets the rest
    kv_cache_gib: int = 0  # vLLM's KV cache in GiB; 0 = automatic (GPU: what the share above leaves; CPU: 2)
    tensor_parallel_size: int = 1  # vLLM (offline): GPUs the base is sharded over (vllm.LLM's tensor_parallel_size)
    server_url: str = "http://localhost:8000"  # engine=vllm-server: the `vllm serve` to generate with

    def __post_init__(self) -> None:
        _require(self.num_candidates >= 2, "num_candidates", "must be >= 2 (GRPO compares candidates)")
        _require(len(self.strategies) > 0, "strategies", "needs at least one strategy")
        for spec in self.strategies:
            try:
                parse_strategy(spec)
            except ValueError as exc:
                raise Invalid("strategies", str(exc)) from None
        _require(self.temperature > 0, "temperature", "must be > 0")
        _require(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        _require(self.max_new_tokens >= 1, "max_new_tokens", "must be >= 1")
        _require(self.batch_size >= 1, "batch_size", "must be >= 1")
        _require(0 < self.gpu_memory_utilization < 1, "gpu_memory_utilization", "must be in (0, 1)")
        _require(self.kv_cache_gib >= 0, "kv_cache_gib", "must be >= 0")
        _require(self.tensor_parallel_size >= 1, "tensor_parallel_size", "must be >= 1")
        _require(
            self.server_url.startswith(("http://", "https://")), "server_url", "must start with http:// or https://"
        )


@dataclass(frozen=True)
class RewardConfig:
    """Scorers, as SPEC[=WEIGHT] strings (see README, "Rewards")."""

    scorers: tuple[str, ...] = ("rule:instructions", "rule:finished=0.25", "rule:repetition=0.25")
    gate: bool = False  # the scorers after the first count only where the first scores above 0 (or has no opinion)
    # A reasoning model's thinking block (<think>...</think>): strip = the scorers see only the answer after it;
    # score = they see the whole text. Either way the whole text counts for `finished` and the guard's lengths.
    thinking: Literal["strip", "score"] = "strip"

    def __post_init__(self) -> None:
        _require(len(self.scorers) > 0, "scorers", "needs at least one scorer")
        _require(not self.gate or len(self.scorers) > 1, "gate", "needs a main scorer and at least one more to gate")


@dataclass(frozen=True)
class UpdateConfig:
    """The GRPO update (trl's GRPOTrainer) on the explored candidates."""

    # grpo: GRPO on each group's spread of scores. rft: the supervised baseline, fine-tuning on each group's best
    # answer (rejection sampling; tao/rft.py) with the sft section's rate, passes and batch
    method: Literal["grpo", "rft"] = "grpo"
    learning_rate: float = 2e-5
    beta: float = 0.02  # KL weight towards the base model
    epochs: int = 1  # optimizer passes over each batch of candidates (trl's num_iterations: later passes are clipped)
    prompts_per_step: int = 4  # prompt groups per optimizer step
    group_size: int = 0  # candidates trained per group, the most spread scores first; 0 = all of them
    min_spread: float = 0.1  # groups whose best and worst scores differ by less are skipped (no signal)
    scale_rewards: bool = True  # divide advantages by the group's score std (trl's "group"); false: reward units
    checkpoint_steps: int = 10  # save adapter + optimizer + RNG state every N steps; a killed update resumes there
    # Recompute activations in the backward pass instead of keeping them: far less memory for a few tenths more time.
    # auto: on with a CUDA GPU (activations are most of an update's memory there), off on CPUs (only costs time)
    gradient_checkpointing: Literal["auto", "on", "off"] = "auto"
    # Further fields of trl's GRPOConfig, passed as they are (e.g. {max_grad_norm: 0.5, use_liger_kernel: true}).
    # Fields tao sets from its own settings, and names GRPOConfig does not have, are errors.
    trl: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require(self.learning_rate > 0, "learning_rate", "must be > 0")
        _require(self.beta >= 0, "beta", "must be >= 0")
        _require(self.epochs >= 1, "epochs", "must be >= 1")
        _require(self.prompts_per_step >= 1, "prompts_per_step", "must be >= 1")
        _require(self.group_size == 0 or self.group_size >= 2, "group_size", "must be 0 (all) or >= 2")
        _require(self.min_spread >= 0, "min_spread", "must be >= 0")
        _require(self.checkpoint_steps >= 0, "checkpoint_steps", "must be >= 0 (0 = no checkpoints)")


@dataclass(frozen=True)
class SftConfig:
    """`tao sft`: the supervised baseline with trl's SFTTrainer, on the same base and LoRA shape as a run."""

    learning_rate: float = 1e-4
    epochs: int = 1  # passes over the labeled examples
    batch_size: int = 4  # examples per optimizer step

    def __post_init__(self) -> None:
        _require(self.learning_rate > 0, "learning_rate", "must be > 0")
        _require(self.epochs >= 1, "epochs", "must be >= 1")
        _require(self.batch_size >= 1, "batch_size", "must be >= 1")


@dataclass(frozen=True)
class JudgeConfig:
    """An LLM judge behind an OpenAI-compatible chat endpoint (``judge:RUBRIC@endpoint`` in reward.scorers)."""

    url: str = ""  # the endpoint's base URL, e.g. http://localhost:8000/v1 (a `vllm serve`) or a hosted API's
    model: str = ""  # the model the endpoint serves, as its requests name it
    api_key_env: str = ""  # the environment variable holding the API key ("" = none); the key is never written
    concurrency: int = 8  # requests in flight at once
    timeout: float = 60.0  # seconds a request may take
    retries: int = 3  # more tries of a request that failed (connection, timeout, 429, 5xx), with backoff

    def __post_init__(self) -> None:
        _require(not self.url or self.url.startswith(("http://", "https://")), "url", "must start with http(s)://")
        _require(self.concurrency >= 1, "concurrency", "must be >= 1")
        _require(self.timeout > 0, "timeout", "must be > 0")
        _require(self.retries >= 0, "retries", "must be >= 0")


@dataclass(frozen=True)
class RewardModelConfig:
    """`tao reward train`: a reward model (trl's RewardTrainer, LoRA on the base) on preference pairs."""

    holdout: float = 0.2  # share of prompts whose pairs are held out to measure pairwise accuracy (seeded)
    learning_rate: float = 1e-4
    epochs: int = 1  # passes over the training pairs
    batch_size: int = 8  # pairs per optimizer step

    def __post_init__(self) -> None:
        _require(0 <= self.holdout < 1, "holdout", "must be in [0, 1)")
        _require(self.learning_rate > 0, "learning_rate", "must be > 0")
        _require(self.epochs >= 1, "epochs", "must be >= 1")
        _require(self.batch_size >= 1, "batch_size", "must be >= 1")


@dataclass(frozen=True)
class EvalConfig:
    """Greedy evaluation on held-out prompts, before the first round and after each."""

    max_prompts: int = 32  # held-out prompts evaluated; 0 = evaluation off
    check: tuple[str, ...] = ()  # scorers the update never trains on, for the reward-hacking guard (tao/guard.py)
    guard: Literal["warn", "stop"] = "warn"  # on a guard alarm: warn, or also end the run after the round
    max_length_ratio: float = 2.0  # held-out answers longer than this many times the base's (or shorter): alarm

    def __post_init__(self) -> None:
        _require(self.max_prompts >= 0, "max_prompts", "must be >= 0")
        _require(self.max_length_ratio > 1, "max_length_ratio", "must be > 1")


@dataclass(frozen=True)
class RunConfig:
    """The loop itself."""

    rounds: int = 1  # rounds per version of the prompts file
    # Wall-clock budget of one invocation, in minutes (0 = none): no round starts that would end past it, and the
    # last one takes only the prompts that fit, estimated from the last finished rounds' times (tao/budget.py).
    minutes: float = 0.0
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 = torch's default
    # Experiment trackers that receive each round's figures and trl's step logs, as one tracker run across rounds and
    # resumes (tao/run/tracker.py): any of tensorboard, trackio, wandb, mlflow, each installed separately.
    report_to: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _require(self.rounds >= 1, "rounds", "must be >= 1")
        for name in self.report_to:
            _require(name in TRACKERS, "report_to", f"{name!r} is not one of {', '.join(TRACKERS)}")
        _require(len(set(self.report_to)) == len(self.report_to), "report_to", "names a tracker twice")
        _require(self.minutes >= 0, "minutes", "must be >= 0 (0 = no budget)")
        _require(0 <= self.seed < 1_000_000, "seed", "must be in [0, 1000000)")
        _require(self.threads >= 0, "threads", "must be >= 0")


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    sft: SftConfig = field(default_factory=SftConfig)
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        _require(
            self.update.group_size <= self.rollout.num_candidates,
            "update.group_size",
            f"must be <= rollout.num_candidates ({self.rollout.num_candidates})",
        )
        _require(
            not any(parse_strategy(s).kind == "repair" for s in self.rollout.strategies)
            or any(split_weight(s)[0] in REPAIRING_SCORERS for s in self.reward.scorers),
            "rollout.strategies",
            f"repair fixes the instructions of a scorer among reward.scorers: {' or '.join(REPAIRING_SCORERS)}",
        )

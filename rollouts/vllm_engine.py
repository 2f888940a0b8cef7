"""The vLLM generation engine: offline ``vllm.LLM`` over the base model, each round's adapter as a LoRARequest.

The engine starts on the first call (tens of seconds) and serves the whole ``tao run``. Between rounds only
the adapter changes: each adapter directory is registered once under its own id (a LoRA is never merged into
the base, which may be 4-bit). Candidates carry vLLM's per-token log-probabilities under the sampling
distribution (``logprobs_mode="processed_logprobs"``). vLLM is imported here only, and only when used.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rollouts.strategies import EXEMPLAR_ROOM
from tao.core.config import Config
from tao.core.console import Console
from tao.core.errors import InputError, ResourceError
from tao.core.model import BaseModel, chat_token_ids, compute_dtype, stop_token_ids
from tao.core.types import Ask, Candidate, Prompt, Sampling

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts
CPU_KV_CACHE_GIB = 2  # the CPU build's KV cache when ``rollout.kv_cache_gib`` is 0
REFINE_CONTEXT = 128  # tokens for the refine strategy's instruction and chat markup around the draft
PROMPTS_PER_CALL = 512  # sequences handed to vLLM at once, divided by n: large batches, and a moving progress bar


def _calls(items: list[tuple[int, Prompt]], rows: list[int]) -> list[list[tuple[int, Prompt]]]:
    """``items`` in order, cut where a call would pass ``PROMPTS_PER_CALL`` sequences (``rows[i]`` each)."""
    calls: list[list[tuple[int, Prompt]]] = [[]]
    total = 0
    for item, n in zip(items, rows, strict=True):
        if calls[-1] and total + n > PROMPTS_PER_CALL:
            calls.append([])
            total = 0
        calls[-1].append(item)
        total += n
    return calls


def request_seed(seed: int, prompt_id: str) -> int:
    """A per-prompt sampling seed: a prompt's candidates do not depend on which other prompts share the call."""
    return int.from_bytes(hashlib.sha256(f"{seed}\0{prompt_id}".encode()).digest()[:4], "big") >> 1


class VllmEngine:
    """Generates with vLLM; one engine per process, started lazily."""

    name = "vllm"

    def __init__(self, base: BaseModel, tokenizer: Any, config: Config, console: Console):
        self.base = base
        self.tokenizer = tokenizer
        self.config = config
        self.console = console
        self.stop_ids = stop_token_ids(tokenizer, base.path)
        self._llm: Any = None
        self._asleep = False
        self._adapter_ids: dict[Path, int] = {}

    def prompt_token_ids(self, prompt: Prompt) -> list[int]:
        return chat_token_ids(self.tokenizer, prompt)

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling, adapter: Path | None) -> list[Candidate]:
        return self.generate_many([Ask(tuple(prompts), sampling)], adapter)[0]

    def generate_many(self, asks: Sequence[Ask], adapter: Path | None) -> list[list[Candidate]]:
        """Every ask's prompts handed to vLLM together (in calls of about ``PROMPTS_PER_CALL`` sequences), each
        request with its own ask's sampling and a seed of its own."""
        from vllm.inputs import TokensPrompt

        llm = self._engine()
        lora = self._lora_request(adapter)
        items = [(k, p) for k, ask in enumerate(asks) for p in ask.prompts]
        out: list[list[Candidate]] = [[] for _ in asks]
        with self.console.bar(len(items), "generate", unit="prompt") as bar:
            for chunk in _calls(items, [asks[k].sampling.n for k, _ in items]):
                params = [self._params(asks[k].sampling, p) for k, p in chunk]
                inputs = [TokensPrompt(prompt_token_ids=self.prompt_token_ids(p)) for _, p in chunk]
                results = self._call(llm.generate, inputs, params, use_tqdm=False, lora_request=lora)
                for (k, prompt), result in zip(chunk, results, strict=True):
                    sampling = asks[k].sampling
                    out[k] += [self._candidate(prompt.id, j, o, sampling) for j, o in enumerate(result.outputs)]
                bar.update(len(chunk))
        return out

    def _params(self, sampling: Sampling, prompt: Prompt) -> Any:
        from vllm import SamplingParams

        greedy = sampling.temperature == 0
        return SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            seed=None if greedy else request_seed(sampling.seed, prompt.id),
            logprobs=None if greedy else 0,  # 0: the sampled token's log-probability only
            stop_token_ids=self.stop_ids,
        )

    def release(self) -> None:
        """On a GPU, sleep: weights go to CPU memory and the KV cache is freed while the update trains."""
        if self._llm is not None and not self._asleep and self._cuda():
            self._llm.sleep(level=1)
            self._asleep = True

    def close(self) -> None:
        """Stop the engine and its worker processes."""
        if self._llm is not None:
            self._llm.llm_engine.engine_core.shutdown()
            self._llm = None
            self._adapter_ids.clear()

    def _engine(self) -> Any:
        if self._llm is None:
            self._llm = self._start()
        elif self._asleep:
            import torch

            torch.cuda.empty_cache()  # the update's cached blocks, held by torch's allocator in this process
            self._llm.wake_up()
            self._asleep = False
        return self._llm

    def _start(self) -> Any:
        from vllm import LLM

        self.console.say("starting vLLM (takes a while on first use)")
        return self._call(LLM, **self.engine_args())

    def engine_args(self) -> dict[str, Any]:
        """What ``vllm.LLM`` is built with; memory from ``rollout.gpu_memory_utilization`` and ``kv_cache_gib``."""
        cuda = self._cuda()
        rollout, model = self.config.rollout, self.config.model
        rank = next((r for r in VLLM_LORA_RANKS if r >= self.config.lora.rank), None)
        if rank is None:
            raise InputError(f"vLLM serves LoRA ranks up to {VLLM_LORA_RANKS[-1]}", field="lora.rank")
        args: dict[str, Any] = {
            "model": str(self.base.path),
            "tokenizer": str(self.base.path),
            "dtype": str(compute_dtype(model.dtype, cuda)).removeprefix("torch."),  # what the update trains in
            "trust_remote_code": model.trust_remote_code,
            "seed": self.config.run.seed,
            "enable_lora": True,
            "max_lora_rank": rank,
            "max_loras": 1,
            "max_model_len": self._max_model_len(),
            "tensor_parallel_size": rollout.tensor_parallel_size,  # checked against the GPUs by choose_engine
            "max_num_seqs": rollout.batch_size,  # sequences decoded together, as in the transformers engine
            "logprobs_mode": "processed_logprobs",  # log-probs of the distribution sampled from
            "gpu_memory_utilization": rollout.gpu_memory_utilization,
            "enforce_eager": not cuda,  # CPU: torch.compile costs ~2 min of start-up for ~8%
            "enable_sleep_mode": cuda,
            "disable_log_stats": True,
            "use_tqdm_on_load": False,  # tao shows its own progress
        }
        if model.quantize == "nf4":
            args["quantization"] = "bitsandbytes"  # the same 4-bit NF4 base the update trains on
        if cuda and rollout.kv_cache_gib:
            args["kv_cache_memory_bytes"] = rollout.kv_cache_gib * 2**30
        if not cuda:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(rollout.kv_cache_gib or CPU_KV_CACHE_GIB)
        return args

    def _max_model_len(self) -> int:
        """Room for the longest prompt, what a strategy adds before it (the refine strategy's draft, or exemplar
        turns) and the answer, within the model's limit."""
        answer = self.config.rollout.max_new_tokens
        wanted = self.config.data.max_prompt_tokens + answer + max(answer + REFINE_CONTEXT, EXEMPLAR_ROOM)
        try:
            limit = json.loads((self.base.path / "config.json").read_text()).get("max_position_embeddings")
        except (OSError, ValueError):
            limit = None
        return min(wanted, int(limit)) if isinstance(limit, int) else wanted

    def _lora_request(self, adapter: Path | None) -> Any:
        if adapter is None:
            return None
        from vllm.lora.request import LoRARequest

        if not (adapter / "adapter_model.safetensors").is_file():
            raise InputError("no adapter_model.safetensors; tao loads adapters from safetensors only", file=adapter)
        # Adapter directories never change once published: one id each, so vLLM loads each one once.
        lora_id = self._adapter_ids.setdefault(adapter.resolve(), len(self._adapter_ids) + 1)
        return LoRARequest(f"adapter-{lora_id}", lora_id, str(adapter.resolve()))

    def _candidate(self, prompt_id: str, index: int, output: Any, sampling: Sampling) -> Candidate:
        ids = list(output.token_ids)
        finished = bool(ids) and ids[-1] in self.stop_ids
        text = self.tokenizer.decode(ids[:-1] if finished else ids, skip_special_tokens=True)
        logprobs = None
        if output.logprobs is not None:
            logprobs = tuple(float(step[token].logprob) for token, step in zip(ids, output.logprobs, strict=True))
        strategy = "greedy" if sampling.temperature == 0 else "sample"
        return Candidate(prompt_id, index, text, tuple(ids), finished, strategy, logprobs)

    def _call(self, work: Any, *args: Any, **kwargs: Any) -> Any:
        """``work(*args, **kwargs)``; vLLM's out-of-memory failures become one line saying what to change."""
        import torch

        try:
            return work(*args, **kwargs)
        except torch.OutOfMemoryError:
            raise ResourceError(_OOM) from None
        except (RuntimeError, ValueError) as exc:
            text = str(exc)
            if "memory" in text.lower() or "KV cache" in text:
                first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
                raise ResourceError(f"{_OOM} (vLLM: {first})") from None
            raise

    @staticmethod
    def _cuda() -> bool:
        import torch

        return torch.cuda.is_available()


_OOM = (
    "vLLM ran out of memory; lower rollout.gpu_memory_utilization or rollout.kv_cache_gib (GPU: the update "
    "needs the rest), rollout.batch_size or data.max_prompt_tokens + rollout.max_new_tokens, "
    "or use rollout.engine=transformers"
)

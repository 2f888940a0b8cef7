"""``tao explore``: explore and score prompts without training, to see what the strategies find first."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

from reward.scorer import RewardSet
from rollouts import strategies
from rollouts.choice import choose_engine, open_engine
from tao.core.config import Config
from tao.core.console import Console
from tao.core.model import Policy, device, prompt_fits, resolve_base
from tao.core.prompts import load_prompts
from tao.core.storage import write_jsonl
from tao.core.types import Sampling
from tao.run import report


def explore_file(
    prompts_path: Path, config: Config, out: Path, adapter: Path | None, limit: int, console: Console
) -> dict:
    """Explore and score the file's prompts (the first ``limit``; 0 = all) with the base or ``adapter``.

    Writes the scored candidates to ``out`` (rows as in a round's candidates.jsonl) and returns the score
    figures, per strategy included."""
    prompt_file = load_prompts(prompts_path)
    rewards = RewardSet.from_config(config.reward.scorers, config, config.reward.gate)
    chosen = strategies.load_strategies(config.rollout.strategies, config.rollout.num_candidates)
    base = resolve_base(config.model, console)
    policy = Policy(base, config.model, config.lora)
    engine = open_engine(choose_engine(config, device().type == "cuda"), base, policy, config, console)
    fits = prompt_fits(policy.tokenizer, config.data.max_prompt_tokens, prompts_path, console)
    prompts = [p for p in prompt_file.prompts if fits(p)]
    prompts = prompts[:limit] if limit else prompts
    r = config.rollout
    sampling = Sampling(r.num_candidates, r.temperature, r.top_p, r.max_new_tokens, config.run.seed)
    with closing(engine):
        candidates, spent = strategies.explore(
            engine, prompts, chosen, sampling, adapter, rewards.totals, repair=rewards.repair
        )
    scored = rewards.score_groups(prompts, candidates)
    write_jsonl(out, (s.to_row() for s in scored))
    return {"explore": {"strategies": spent}, "score": report.score_stats(scored, config.update.min_spread)}

"""Every reader of user input, fed what hypothesis makes up: it returns, or raises InputError (one line, exit 2);
never another exception, never a hang. 2,000 inputs per reader, six readers: 12,000 files or lines a run."""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reward.pairs import load_pairs
from reward.scorer import build_scorer
from rollouts.strategies import load_strategies
from tao.commands.sft import load_labeled
from tao.core.config_file import load_config
from tao.core.errors import InputError
from tao.core.prompts import load_prompts

EXAMPLES = 2000
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
keys = st.sampled_from(
    ["prompt", "messages", "id", "custom_id", "request", "body", "completion", "chosen", "rejected", "role"]
    + ["content", "prompt_id", "reference", "completions"]
)
records = st.dictionaries(keys, values, max_size=5)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool", "robot", ""]), "content": values}
)
lines = st.one_of(
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    records.map(json.dumps),
    st.lists(message, max_size=3).map(lambda m: json.dumps({"messages": m})),
    values.map(json.dumps),
)
files = st.lists(lines, min_size=0, max_size=4).map(lambda ls: "\n".join(ls))


def through(reader, text: str, suffix: str = ".jsonl") -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{suffix}"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        with contextlib.suppress(InputError):
            reader(path)


@FUZZ
@given(files)
def test_prompts_files(text):
    through(load_prompts, text)


@FUZZ
@given(files)
def test_labeled_sft_data(text):
    through(load_labeled, text)


@FUZZ
@given(files)
def test_preference_pairs(text):
    through(load_pairs, text)


yaml_text = st.one_of(
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.dictionaries(
        st.sampled_from(["run", "data", "update", "reward", "rollout", "judge", "x"]), values, max_size=3
    ).map(json.dumps),
    st.dictionaries(
        st.sampled_from(["update", "data", "rollout"]),
        st.dictionaries(st.sampled_from(["trl", "fields", "learning_rate", "strategies", "seed", "method"]), values),
    ).map(json.dumps),
)


@FUZZ
@given(yaml_text)
def test_config_files(text):
    through(load_config, text, ".yaml")


@FUZZ
@given(st.text(max_size=200))
def test_guide_files(text):
    def guide(path):
        load_strategies([f"guide:{path}"], 8)

    through(guide, text, ".txt")


# Specs that load nothing from outside: rules and the yardstick (a module, a model or a judge names real things)
rule_prefixes = st.sampled_from(["rule:", "rule:length:", "rule:regex:", "rule:min_words:", "ifeval", ""])
rule_specs = st.tuples(rule_prefixes, st.text(max_size=40)).map("".join)
strategy_prefixes = st.sampled_from(["", "sample", "ladder:", "best_of:", "refine:", "exemplars:", "think="])
strategy_specs = st.tuples(strategy_prefixes, st.text(max_size=30)).map("".join)


@FUZZ
@given(rule_specs, strategy_specs)
@example("rule:length:²", "best_of:²")  # found by this test: a superscript is a digit to str.isdigit, not to int
def test_scorer_and_strategy_specs(scorer, strategy):
    for build, spec in ((build_scorer, scorer), (lambda s: load_strategies([s], 8), strategy)):
        with contextlib.suppress(InputError):
            build(spec)

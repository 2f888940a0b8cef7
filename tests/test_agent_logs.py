"""An agent's logs as they come: tool definitions and tool-call turns reach the model's chat template; image,
audio and file parts are left out and counted; a whole run trains on such prompts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tao.core.errors import InputError
from tao.core.model import chat_token_ids
from tao.core.prompts import parse_record
from tao.core.types import Message, Prompt, content_key
from tao.run.paths import RunPaths
from tests.conftest import write_jsonl
from tests.test_loop import tao_run

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
AGENT = {
    "custom_id": "agent-1",
    "body": {
        "model": "prod",
        "tools": [WEATHER],
        "messages": [
            {"role": "system", "content": "You help travellers."},
            {"role": "user", "content": "Should I take an umbrella to Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "rain, 12 C"},
        ],
    },
}
# Renders tools and calls the way tool-using chat templates do (the test model's own template ignores them).
TOOL_TEMPLATE = (
    "{% if tools %}<tools>{{ tools | tojson }}</tools>\n{% endif %}"
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}"
    "{% if m.tool_calls %}{% for c in m.tool_calls %}<call id={{ c.id }}>{{ c.function.name }}"
    "{{ c.function.arguments | tojson }}</call>{% endfor %}{% endif %}"
    "{% if m.tool_call_id %}<for {{ m.tool_call_id }}>{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def test_tool_definitions_and_calls_reach_the_chat_template(tiny_model):
    from transformers import AutoTokenizer

    prompt = parse_record(AGENT, Path("logs.jsonl"), 1)
    assert [m.role for m in prompt.messages] == ["system", "user", "assistant", "tool"]
    assert prompt.text == "Should I take an umbrella to Paris?"  # the user's last turn, not the tool's result
    assert "tools" not in prompt.metadata and json.loads(prompt.tools[0]) == WEATHER
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.chat_template = TOOL_TEMPLATE
    shown = tokenizer.decode(chat_token_ids(tokenizer, prompt)).replace(" ", "")
    assert '<tools>[{"function":{"description":"Theweatherinacity","name":"get_weather"' in shown
    assert '<callid=call_1>get_weather{"city":"Paris"}</call>' in shown  # arguments as an object, as templates want
    assert "<tool>rain,12C<forcall_1>" in shown and shown.endswith("<assistant>")
    # the run directory keeps all of it
    assert Prompt.from_row(json.loads(json.dumps(prompt.to_row()))) == prompt


def test_tools_are_part_of_what_makes_a_prompt_distinct_and_plain_prompts_keep_their_keys():
    plain = (Message("user", "hi"),)
    old_key = hashlib.sha256(json.dumps([["user", "hi"]]).encode()).hexdigest()
    assert content_key(plain) == old_key  # pools written before tools existed still match
    with_tools = parse_record({"prompt": "hi", "tools": [WEATHER]}, Path("p"), 1)
    assert (
        with_tools.content_key != content_key(plain)
        and with_tools.id != parse_record({"prompt": "hi"}, Path("p"), 1).id
    )
    legacy = parse_record(
        {
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": "{}"}},
                {"role": "tool", "content": "sunny"},
            ],
            "functions": [WEATHER["function"]],
        },
        Path("p"),
        1,
    )
    assert json.loads(legacy.tools[0]) == WEATHER and legacy.messages[1].tool_calls[0].name == "get_weather"


@pytest.mark.parametrize(
    ("record", "field", "problem"),
    [
        (
            {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "", "tool_calls": [{}]}]},
            "messages[1].tool_calls[0]",
            "expected a call with a function name",
        ),
        ({"prompt": "x", "tools": {"name": "f"}}, "tools", "expected a list of tool definitions"),
        (
            {"body": {"messages": [{"role": "user", "content": "x"}], "tools": ["f"]}},
            "body.tools[0]",
            "expected an object",
        ),
        (
            {"messages": [{"role": "tool", "content": "x", "tool_call_id": 3}]},
            "messages[0].tool_call_id",
            "expected a string",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "hologram"}]}]},
            "messages[0].content[0]",
            "expected a text, image, audio or file part, got 'hologram'",
        ),
    ],
)
def test_malformed_agent_records_name_their_field(record, field, problem):
    with pytest.raises(InputError) as caught:
        parse_record(record, Path("logs.jsonl"), 3)
    assert caught.value.field == field and problem in caught.value.problem


def test_a_run_trains_on_agent_prompts_and_counts_the_parts_it_left_out(tiny_model, tmp_path):
    rows = []
    for i in range(12):
        record = json.loads(json.dumps(AGENT))
        record["custom_id"] = f"agent-{i}"
        record["body"]["messages"][1]["content"] = [
            {"type": "text", "text": f"Should I take an umbrella to city {i}?"},
            *([{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}] * (i % 3)),
        ]
        rows.append(record)
    prompts = write_jsonl(tmp_path / "agent.jsonl", rows)
    result = tao_run(prompts, tiny_model, tmp_path / "run")
    assert result.exit_code == 0, result.output
    images = sum(i % 3 for i in range(12))
    assert f"{images} image, audio or file part(s) left out of 8 prompt(s) (lines 2, 3, 5, 6, 8...)" in result.output
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    (left_out,) = run["media_left_out"].values()
    assert left_out == {"parts": images, "prompts": 8, "first_lines": [2, 3, 5, 6, 8]}
    (round1,) = RunPaths(tmp_path / "run").rounds()
    update = json.loads(round1.stage("update").read_text())
    assert update["steps"] >= 1 and update["groups_trained"] >= 1  # GRPO replayed the agent prompts' candidates
    candidate = json.loads(round1.candidates.read_text().splitlines()[0])
    assert candidate["prompt_id"].startswith("agent-")

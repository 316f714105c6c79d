"""`python -m smt serve` as real clients use it: the official `openai` client (chat, streaming, legacy completions,
its error classes), raw HTTP on one keep-alive connection (a refused request leaves it usable), and a process
where polars cannot be imported (serving needs the model and transformers, not the pipeline's table libraries).
One server, with an API key, answers every test of this file; generations are a few tokens long."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from helpers import ROOT, env

from smt.synth.serve import Visible

KEY = "sk-serve-test-51c0"  # made up
TIMEOUT = 120  # seconds for one answer on a busy 2-core machine

WITHOUT_POLARS = """
import sys

class NoPolars:
    def find_spec(self, name, path=None, target=None):
        if name == "polars" or name.startswith("polars."):
            raise ImportError("polars is not installed here")

sys.meta_path.insert(0, NoPolars())
from smt.cli import main

sys.exit(main(["serve", "--model", sys.argv[1], "--port", sys.argv[2], "--api-key-env", "SMT_SERVE_KEY"]))
"""


@pytest.fixture(scope="module")
def port(base_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path_factory.mktemp("serve") / "serve_without_polars.py"
    script.write_text(WITHOUT_POLARS)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(base_model), str(port)],
        cwd=ROOT,
        env={**env(), "PYTHONPATH": str(ROOT), "SMT_SERVE_KEY": KEY},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, proc.stderr.read()[-3000:] if proc.stderr else ""
            assert time.monotonic() < deadline, "the server did not become healthy"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.fixture(scope="module")
def client(port: int) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, timeout=TIMEOUT, max_retries=0)


@pytest.fixture(scope="module")
def model(client: openai.OpenAI) -> str:
    return client.models.list().data[0].id


MESSAGES = [{"role": "user", "content": "Name a colour."}]
HEADERS = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


def test_serve_answers_without_polars(port: int) -> None:
    body = json.dumps({"messages": MESSAGES, "max_tokens": 4, "seed": 1})
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", body.encode(), HEADERS)
    with urllib.request.urlopen(request, timeout=TIMEOUT) as r:
        answer = json.loads(r.read())
    assert answer["usage"]["completion_tokens"] > 0 and isinstance(answer["choices"][0]["message"]["content"], str)


def test_openai_chat_streams_the_text_it_answers(client: openai.OpenAI, model: str) -> None:
    """Same seed, same text: streamed token by token (a chunk per token), then the finish reason and the usage."""
    settings = {"model": model, "messages": MESSAGES, "max_tokens": 6, "seed": 3, "temperature": 0.7}
    whole = client.chat.completions.create(**settings)
    text = whole.choices[0].message.content
    chunks = list(client.chat.completions.create(**settings, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(pieces) == text and text
    assert len([p for p in pieces if p]) > 1, "tokens arrive as they are drawn, not as one piece"
    *_, last, usage = chunks
    assert last.choices[0].finish_reason == whole.choices[0].finish_reason == "length"
    assert usage.choices == [] and usage.usage == whole.usage and whole.usage.completion_tokens == 6

    # a stop string cuts the text, streamed or not
    stop = text.strip()[-2:]
    cut = text[: text.find(stop)]
    stopped = client.chat.completions.create(**settings, stop=[stop])
    assert (stopped.choices[0].message.content, stopped.choices[0].finish_reason) == (cut, "stop")
    streamed = [c.choices[0] for c in client.chat.completions.create(**settings, stop=[stop], stream=True)]
    assert "".join(c.delta.content or "" for c in streamed) == cut and streamed[-1].finish_reason == "stop"


def test_openai_legacy_completions(client: openai.OpenAI, model: str) -> None:
    settings = {"model": model, "prompt": "The sky is", "max_tokens": 4, "seed": 1, "temperature": 0.7}
    whole = client.completions.create(**settings)
    assert whole.object == "text_completion" and whole.usage.completion_tokens == 4
    chunks = list(client.completions.create(**settings, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_openai_client_errors(port: int, client: openai.OpenAI, model: str) -> None:
    wrong = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-wrong", timeout=TIMEOUT, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        wrong.chat.completions.create(model=model, messages=MESSAGES, max_tokens=2)
    assert refused.value.code == "invalid_api_key"
    with pytest.raises(openai.NotFoundError, match="Invalid URL"):
        client.post("/embeddings", body={"model": model, "input": "x"}, cast_to=object)
    with pytest.raises(openai.NotFoundError) as unknown_model:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES, max_tokens=2)
    assert unknown_model.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as malformed:
        client.chat.completions.create(model=model, messages="Name a colour.", max_tokens=2)  # type: ignore[arg-type]
    assert malformed.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as too_long:
        client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=10**6, stream=True)
    assert too_long.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError, match="'n' is not supported"):
        client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=2, n=2)


def _answer(conn: http.client.HTTPConnection, method: str, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def test_refused_requests_leave_the_connection_usable(port: int) -> None:
    """Each refusal reads the body it refuses, in OpenAI's error shape; the next request on the same keep-alive
    connection is answered, a streamed one (chunked) too."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    valid = json.dumps({"messages": MESSAGES, "max_tokens": 2, "seed": 1}).encode()
    refusals = [
        ("POST", "/v1/no-such-route", b'{"prompt": "' + b"x" * 70000 + b'"}', HEADERS, 404),
        ("POST", "/v1/chat/completions", b'{"messages": [', HEADERS, 400),
        ("POST", "/v1/chat/completions", valid, {**HEADERS, "Authorization": "Bearer sk-wrong"}, 401),
        ("GET", "/v1/no-such-route", b"", HEADERS, 404),
    ]
    try:
        for method, path, body, headers, status in refusals:
            got, raw = _answer(conn, method, path, body, headers)
            error = json.loads(raw)["error"]
            assert (got, sorted(error)) == (status, ["code", "message", "param", "type"]), raw
            got, raw = _answer(conn, "POST", "/v1/chat/completions", valid, HEADERS)
            assert got == 200 and json.loads(raw)["object"] == "chat.completion"
        streamed = json.dumps({"messages": MESSAGES, "max_tokens": 2, "seed": 1, "stream": True}).encode()
        got, raw = _answer(conn, "POST", "/v1/chat/completions", streamed, HEADERS)
        events = [line for line in raw.decode().split("\n\n") if line]
        assert got == 200 and all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
        assert json.loads(events[-2].removeprefix("data: "))["choices"][0]["finish_reason"] == "length"
        got, raw = _answer(conn, "GET", "/v1/models", b"", HEADERS)
        assert got == 200 and json.loads(raw)["data"][0]["object"] == "model"
    finally:
        conn.close()


def test_visible_text_holds_back_what_may_change() -> None:
    """A partial UTF-8 character or a possible start of a stop string is not sent until the text goes on."""
    visible = Visible(["STOP"])
    assert visible.delta("Hello ST") == "Hello "
    assert visible.delta("Hello STa\ufffd") == "STa"
    assert visible.delta("Hello STaé S") == "é "
    assert visible.delta("Hello STaé STOP and more") == ""
    assert visible.stopped and visible.sent == "Hello STaé "
    assert Visible([]).delta("ab\ufffd", final=True) == "ab\ufffd"

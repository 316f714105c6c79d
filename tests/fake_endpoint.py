"""A fake OpenAI-compatible endpoint on loopback, for the tests that must not wait for a model: its answers depend
only on the request (seed and messages), so records made through it are the same however requests are batched,
retried or resumed, and a script of faults makes it misbehave on purpose, one fault per request as they arrive.

Faults: `500`, `429` (with Retry-After), `bad_json`, `no_choices`, `no_message` (malformed 200 answers), `cut` (a
body shorter than its Content-Length), `reset` (the connection closed without an answer), `slow` (an answer later
than the client's timeout), `400` and `401` (each echoing the request's Authorization header, as a careless proxy
would), `404`. `redirect_models` sends GET /models elsewhere with a 302.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "fake-model"
MALFORMED = {"bad_json", "no_choices", "no_message"}  # 200 answers that are not what the API promises
FAULTS = ["500", "429", "bad_json", "no_choices", "no_message", "cut", "reset", "slow"]  # all retryable
RETRY_AFTER = "0.2"  # seconds
SLOW_SECONDS = 1.5  # longer than the timeout the tests give the client


def answer_text(body: dict[str, Any]) -> str:
    """A QA continuation of the "Question:" prefill that depends on the seed and the messages only."""
    asked = [m for m in body["messages"] if m["role"] != "assistant"]  # not the prefill, sent or not
    digest = hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()[:6]
    seed = body.get("seed", 0)
    return f" What does passage {digest} say about item {seed}?\nAnswer: It says {seed % 89} twice."


class FakeEndpoint:
    def __init__(self, faults: Iterable[str | None] = (), redirect_models: str | None = None) -> None:
        self.faults = list(faults)
        self.redirect_models = redirect_models
        self.seen: list[tuple[str, str, dict[str, str]]] = []  # method, path, headers of every request
        self.answered = 0
        self.delay = 0.0  # seconds before every good answer (a slow model)
        self.gate = threading.Event()  # good answers wait while it is clear (a job that runs until a test says)
        self.gate.set()
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                endpoint.note(self)
                if endpoint.redirect_models and self.path.endswith("/models"):
                    self.send_response(302)
                    self.send_header("Location", endpoint.redirect_models)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.reply(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fault = endpoint.note(self)
                echo = self.headers.get("Authorization", "")
                if fault in ("500", "404"):
                    self.reply(int(fault), {"error": {"message": "scripted failure"}})
                elif fault == "429":
                    self.reply(429, {"error": {"message": "slow down"}}, {"Retry-After": RETRY_AFTER})
                elif fault in ("400", "401"):
                    self.reply(int(fault), {"error": {"message": f"bad request; you sent Authorization: {echo}"}})
                elif fault == "bad_json":
                    self.raw(200, b"<html>upstream timed out</html>")
                elif fault == "no_choices":
                    self.reply(200, {"object": "chat.completion", "choices": []})
                elif fault == "no_message":
                    self.reply(200, {"object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop"}]})
                elif fault == "cut":
                    self.raw(200, b'{"choices": [{"message": {"content": "Ques', length=400)
                elif fault == "reset":
                    self.close_connection = True
                    self.connection.close()
                else:
                    endpoint.gate.wait(120)
                    time.sleep(SLOW_SECONDS if fault == "slow" else endpoint.delay)
                    self.reply(200, endpoint.completion(body))

            def reply(self, code: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                self.raw(code, json.dumps(payload).encode(), headers=headers)

            def raw(self, code: int, data: bytes, length: int | None = None, headers: dict | None = None) -> None:
                self.send_response(code)
                for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(length or len(data)))
                self.end_headers()
                self.wfile.write(data)
                if length:  # a body cut short: the connection ends before Content-Length bytes
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.close()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False  # a slow answer still sleeping does not hold up the test
        self.server.handle_error = lambda request, address: None  # a client that gave up on a slow answer
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    def note(self, handler: BaseHTTPRequestHandler) -> str | None:
        """Record a request; the fault it gets (None: a good answer)."""
        with self._lock:
            self.seen.append((handler.command, handler.path, dict(handler.headers)))
            return self.faults.pop(0) if self.faults and handler.command == "POST" else None

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        text = answer_text(body)
        with self._lock:
            self.answered += 1
        return {
            "object": "chat.completion",
            "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(json.dumps(body)) // 4, "completion_tokens": len(text.split())},
        }

    @property
    def posts(self) -> int:
        return sum(1 for method, _, _ in self.seen if method == "POST")

    def __enter__(self) -> FakeEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

"""A small OpenAI-compatible server around the transformers backend: `python -m smt serve --model DIR`.

It answers `POST /v1/chat/completions` (with vLLM's `continue_final_message` for answer prefills and
`response_format` JSON schemas, which it steers by a JSON prefill, not enforced, and `chat_template_kwargs`, passed
to the chat template as vLLM's server does), `GET /v1/models` and
`GET /health`. Concurrent requests with the same sampling settings are batched together; since every request
carries its own seed, what a request gets does not depend on its batch, so the HTTP backend against this server
returns what the transformers backend returns directly. The socket opens before the model is loaded and answers
503 (Retry-After) until then, as a starting vLLM server does. A prompt too long for the model's context is
answered 400 with the reason. With `--api-key-env NAME` it requires
`Authorization: Bearer $NAME`; headers are never logged.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import queue
import secrets
import sys
import threading
import time
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from smt.synth.backends.transformers import TransformersBackend
from smt.synth.generation import Completion, Request, Sampling

log = logging.getLogger("smt.serve")
BATCH_WAIT_SECONDS = 0.02


class Batcher:
    """One worker thread runs the model; requests that arrive together with equal sampling share a batch."""

    def __init__(self, backend: TransformersBackend, max_batch: int) -> None:
        self.backend = backend
        self.max_batch = max_batch
        self.queue: queue.Queue[tuple[Request, Sampling, Future[Completion]]] = queue.Queue()
        threading.Thread(target=self._work, daemon=True).start()

    def submit(self, request: Request, sampling: Sampling) -> Completion:
        future: Future[Completion] = Future()
        self.queue.put((request, sampling, future))
        return future.result()

    def _work(self) -> None:
        while True:
            batch = [self.queue.get()]
            deadline = time.monotonic() + BATCH_WAIT_SECONDS
            while len(batch) < self.max_batch:
                try:
                    item = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item[1] != batch[0][1]:
                    self.queue.put(item)  # other sampling settings: next batch
                    break
                batch.append(item)
            try:
                done = self.backend.generate([r for r, _, _ in batch], batch[0][1], progress=False)
                for (_, _, future), completion in zip(batch, done, strict=True):
                    future.set_result(completion)
            except Exception as exc:
                for _, _, future in batch:
                    future.set_exception(exc)


class State:
    def __init__(self, model_name: str, api_key: str, fingerprint: str) -> None:
        self.model_name = model_name
        self.api_key = api_key
        self.fingerprint = fingerprint
        self.batcher: Batcher | None = None
        self.load_error = ""
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.served = 0


def parse_request(body: dict[str, Any], counter: int) -> tuple[Request, Sampling]:
    """A chat-completions body as one smt Request; ValueError names the offending field."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise ValueError("'messages' must be a non-empty list of {role, content} objects")
    prefill = ""
    if body.get("continue_final_message") and messages[-1].get("role") == "assistant":
        prefill, messages = str(messages[-1].get("content", "")), messages[:-1]
    schema = None
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
    seed = body.get("seed")
    variables = body.get("chat_template_kwargs") or {}
    if not isinstance(variables, dict):
        raise ValueError("'chat_template_kwargs' must be an object")
    sampling = Sampling(
        float(body.get("temperature", 1.0)), float(body.get("top_p", 1.0)), int(body.get("max_tokens", 256))
    )
    if sampling.max_new_tokens < 1 or not 0 < sampling.top_p <= 1 or sampling.temperature < 0:
        raise ValueError("'max_tokens' must be >= 1, 'top_p' in (0, 1], 'temperature' >= 0")
    request = Request(
        f"req-{counter}",
        [{"role": str(m.get("role")), "content": str(m.get("content", ""))} for m in messages],
        int(seed) if seed is not None else secrets.randbits(63),
        prefill=prefill,
        json_schema=schema,
        chat_template_kwargs=variables,
    )
    return request, sampling


def make_handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "smt-serve"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            log.info("%s %s", self.address_string(), format % args)

        def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
            self._send(status, {"error": {"code": status, "message": message}}, headers)

        def _authorized(self) -> bool:
            if not state.api_key:
                return True
            given = self.headers.get("Authorization", "")
            return hmac.compare_digest(given.encode(), f"Bearer {state.api_key}".encode())

        def _unavailable(self) -> bool:
            if state.load_error:
                self._error(500, f"model failed to load: {state.load_error}")
                return True
            if state.batcher is None:
                self._error(503, "model is loading", {"Retry-After": "1"})
                return True
            return False

        def do_GET(self) -> None:
            if self.path == "/health":
                ready = state.batcher is not None
                payload = {
                    "status": "ok" if ready else "loading",
                    "served": state.served,
                    "peak_in_flight": state.peak_in_flight,
                }
                self._send(200 if ready else 503, payload)
            elif self.path == "/v1/models":
                if not self._authorized():
                    self._error(401, "invalid or missing API key")
                    return
                self._send(200, {"object": "list", "data": [{"id": state.model_name, "object": "model"}]})
            else:
                self._error(404, f"no route {self.path}")

        def do_POST(self) -> None:
            if self.path != "/v1/chat/completions":
                self._error(404, f"no route {self.path}")
                return
            if not self._authorized():
                self._error(401, "invalid or missing API key")
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if body.get("model") not in (None, state.model_name):
                    self._error(404, f"model {body.get('model')!r} is not served; serving {state.model_name!r}")
                    return
                with state.lock:
                    state.served += 1
                    counter = state.served
                request, sampling = parse_request(body, counter)
            except (ValueError, TypeError, AttributeError) as exc:
                self._error(400, f"bad request: {exc}")
                return
            if self._unavailable():
                return
            with state.lock:
                state.in_flight += 1
                state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
            try:
                completion = state.batcher.submit(request, sampling)  # type: ignore[union-attr]
            finally:
                with state.lock:
                    state.in_flight -= 1
            if completion.error:  # refused before it ran (too long for the model's context)
                self._error(400, completion.error)
                return
            text = completion.text[len(request.prefill) :] if request.prefill else completion.text
            self._send(
                200,
                {
                    "id": f"chatcmpl-{counter}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": state.model_name,
                    "system_fingerprint": state.fingerprint,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": completion.finish_reason,
                        }
                    ],
                    "usage": {
                        "prompt_tokens": completion.prompt_tokens,
                        "completion_tokens": completion.completion_tokens,
                        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
                    },
                },
            )

    return Handler


def serve(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    dtype: str = "float32",
    batch_size: int = 8,
    api_key_env: str | None = None,
    served_model_name: str | None = None,
) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    from smt.artifacts import model_identity

    identity = model_identity(model)
    api_key = os.environ.get(api_key_env, "") if api_key_env else ""
    if api_key_env and not api_key:
        log.error("environment variable %s (the API key) is empty or unset", api_key_env)
        return 2
    state = State(served_model_name or identity["id"] or Path(model).name, api_key, f"smt-{identity['revision']}")
    server = ThreadingHTTPServer((host, port), make_handler(state))
    server.daemon_threads = True

    def load() -> None:
        try:
            state.batcher = Batcher(TransformersBackend(model, dtype=dtype, batch_size=batch_size), batch_size)
            log.info("model %s ready", state.model_name)
        except Exception as exc:
            state.load_error = f"{type(exc).__name__}: {exc}"
            log.error("loading %s failed: %s", model, state.load_error)

    threading.Thread(target=load, daemon=True).start()
    log.info("serving %s on http://%s:%d/v1 (auth %s)", state.model_name, host, port, "on" if api_key else "off")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0

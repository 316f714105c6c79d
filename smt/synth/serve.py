"""A small OpenAI-compatible server around the transformers backend: `python -m smt serve --model DIR`.

It answers `POST /v1/chat/completions` (with vLLM's `continue_final_message` for answer prefills and
`response_format` JSON schemas, which it steers by a JSON prefill, not enforced, and `chat_template_kwargs`, passed
to the chat template as vLLM's server does), `POST /v1/completions` (legacy
text completions: one prompt, no chat template), `GET /v1/models[/ID]` and `GET /health`. Both completion routes
stream with `"stream": true`: server-sent events in OpenAI's chunk format, one chunk per decoded token as the model
draws it, a last chunk with the finish reason, a usage chunk with `stream_options.include_usage`, then
`data: [DONE]`. The joined chunks are the text the same request gets without streaming. `stop` strings cut the
text (the model still runs to its own stop or `max_tokens`, and usage counts those tokens); `n` > 1, `logprobs`,
`tools`, `suffix` and `best_of` > 1 are refused (400). A request whose prompt plus `max_tokens` exceeds the
model's context is refused with 400 `context_length_exceeded`.

Every error is OpenAI's JSON (`{"error": {"message", "type", "param", "code"}}`) with its status (400 malformed
body, 401 wrong key, 404 unknown route or model, 503 while loading); the request body is read before any answer,
so a keep-alive connection stays usable after a refusal. Requests that arrive together with the same sampling
settings are batched by one worker thread, the only one that touches the model and its tokenizer; since every
request carries its own seed, what a request gets does not depend on its batch, so the HTTP backend against this
server returns what the transformers backend returns directly. A client that disconnects mid-stream stops
receiving, but its generation runs on to its end. The socket opens before the model is loaded and answers 503
(Retry-After) until then, as a starting vLLM server does. With `--api-key-env NAME` it requires
`Authorization: Bearer $NAME`; headers are never logged.

Longer than most modules: the wire protocol (routes, OpenAI's errors and chunk formats, reading every body,
streaming) and the batching worker that owns the model are one server, kept in one place.
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
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from smt.synth.backends.transformers import TransformersBackend
from smt.synth.generation import BackendSettings, Completion, Request, Sampling

log = logging.getLogger("smt.serve")
BATCH_WAIT_SECONDS = 0.02
MAX_BODY_BYTES = 16 * 2**20
CHAT, TEXT = "/v1/chat/completions", "/v1/completions"


class ApiError(Exception):
    """An answer in OpenAI's error shape."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None, kind: str = ""
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")

    def payload(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass
class Job:
    request: Request
    sampling: Sampling
    on_text: Callable[[str], None] | None  # the decoded completion so far, after each token (streaming)
    future: Future[Completion] = field(default_factory=Future)
    ids: list[int] = field(default_factory=list)


class Batcher:
    """One worker thread runs the model; requests that arrive together with equal sampling share a batch."""

    def __init__(self, backend: TransformersBackend, max_batch: int) -> None:
        self.backend = backend
        self.max_batch = max_batch
        self.context = getattr(backend.model.config, "max_position_embeddings", None)
        self.queue: queue.Queue[Job] = queue.Queue()
        threading.Thread(target=self._work, daemon=True).start()

    def submit(
        self, request: Request, sampling: Sampling, on_text: Callable[[str], None] | None = None
    ) -> Future[Completion]:
        job = Job(request, sampling, on_text)
        self.queue.put(job)
        return job.future

    def _fits(self, job: Job) -> bool:
        """Refuse (in the worker thread, which owns the tokenizer) a prompt that leaves no room for max_tokens."""
        if not self.context:
            return True
        text = self.backend.prompt_text(job.request)
        n = len(self.backend.tokenizer(text, add_special_tokens=False).input_ids)
        if n + job.sampling.max_new_tokens <= self.context:
            return True
        param = "prompt" if job.request.prompt else "messages"
        message = (
            f"This model's maximum context length is {self.context} tokens. However, you requested "
            f"{n + job.sampling.max_new_tokens} tokens ({n} in the {param}, {job.sampling.max_new_tokens} for the "
            "completion). Please reduce the length of the prompt or max_tokens."
        )
        job.future.set_exception(ApiError(400, message, param, "context_length_exceeded"))
        return False

    def _work(self) -> None:
        while True:
            batch = [self.queue.get()]
            deadline = time.monotonic() + BATCH_WAIT_SECONDS
            while len(batch) < self.max_batch:
                try:
                    job = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job.sampling != batch[0].sampling:
                    self.queue.put(job)  # other sampling settings: next batch
                    break
                batch.append(job)
            try:
                batch = [job for job in batch if self._fits(job)]
                if not batch:
                    continue
                jobs = {job.request.key: job for job in batch}

                def on_token(key: str, token_id: int, jobs: dict[str, Job] = jobs) -> None:
                    job = jobs[key]
                    if job.on_text is not None:
                        job.ids.append(token_id)
                        job.on_text(self.backend.tokenizer.decode(job.ids, skip_special_tokens=True))

                requests = [job.request for job in batch]
                done = self.backend.generate(requests, batch[0].sampling, progress=False, on_token=on_token)
                for job, completion in zip(batch, done, strict=True):
                    if completion.error:  # refused by the backend before it ran
                        job.future.set_exception(ApiError(400, completion.error, "messages", "invalid_request"))
                    else:
                        job.future.set_result(completion)
            except Exception as exc:
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)


class Visible:
    """What a client may see of a growing completion: the text up to the first `stop` string; while it grows,
    never a trailing partial character (U+FFFD from an incomplete UTF-8 sequence) or a possible start of a stop."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.sent = ""
        self.stopped = False

    def cut(self, text: str) -> tuple[str, bool]:
        hits = [text.find(s) for s in self.stops if s in text]
        return (text[: min(hits)], True) if hits else (text, False)

    def delta(self, text: str, final: bool = False) -> str:
        """The text not yet sent, of `text`, the whole visible completion so far."""
        if self.stopped:
            return ""
        text, self.stopped = self.cut(text)
        if not final and not self.stopped:
            text = text.rstrip("\ufffd")
            for k in range(min(len(text), max((len(s) for s in self.stops), default=1) - 1), 0, -1):
                if any(s.startswith(text[-k:]) for s in self.stops):
                    text = text[:-k]
                    break
        if not text.startswith(self.sent):
            return ""  # an earlier piece decoded differently once more tokens came: it was sent, and stays
        new, self.sent = text[len(self.sent) :], text
        return new


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


def _number(body: dict[str, Any], name: str, default: float, kind: type = float) -> Any:
    value = body.get(name)
    if value is None:
        return kind(default)
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
        raise ApiError(400, f"'{name}' must be a number", name, "invalid_type")
    return kind(value)


def _content(message: dict[str, Any], index: int) -> str:
    """A message's text: a string, or a list of text parts (what newer clients send)."""
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    raise ApiError(400, "message content must be a string or a list of text parts", f"messages.[{index}].content")


@dataclass
class Parsed:
    request: Request
    sampling: Sampling
    stream: bool
    include_usage: bool
    stops: list[str]
    head: str  # visible text before the generated tokens: the JSON prefill of a schema, or the echoed prompt


def parse_request(body: Any, counter: int, chat: bool = True) -> Parsed:
    """A chat-completions (or legacy completions) body as one smt Request; ApiError names the offending field."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", None, "invalid_body")
    refused = {"tools": body.get("tools"), "functions": body.get("functions"), "suffix": body.get("suffix")}
    refused["logprobs"] = body.get("logprobs") not in (None, False, 0)
    refused["n"] = body.get("n") not in (None, 1)
    refused["best_of"] = body.get("best_of") not in (None, 1)
    for name, value in refused.items():
        if value:
            raise ApiError(400, f"'{name}' is not supported by smt serve", name, "unsupported_parameter")
    schema, prefill, head, messages, prompt = None, "", "", [], ""
    if chat:
        raw = body.get("messages")
        if not isinstance(raw, list) or not raw or not all(isinstance(m, dict) for m in raw):
            raise ApiError(400, "'messages' must be a non-empty list of {role, content} objects", "messages")
        messages = [{"role": str(m.get("role")), "content": _content(m, i)} for i, m in enumerate(raw)]
        if body.get("continue_final_message") and messages[-1]["role"] == "assistant":
            prefill, messages = messages[-1]["content"], messages[:-1]
        response_format = body.get("response_format") or {}
        if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema")
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt:
            raise ApiError(400, "'prompt' must be one non-empty string", "prompt")
        head = prompt if body.get("echo") else ""
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop or []
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > 4:
        raise ApiError(400, "'stop' must be a string or a list of up to 4 non-empty strings", "stop")
    max_tokens = body.get("max_completion_tokens") if body.get("max_tokens") is None else body.get("max_tokens")
    sampling = Sampling(
        _number(body, "temperature", 1.0),
        _number(body, "top_p", 1.0),
        _number({"max_tokens": max_tokens}, "max_tokens", 256 if chat else 16, int),
    )
    if sampling.max_new_tokens < 1:
        raise ApiError(400, "'max_tokens' must be >= 1", "max_tokens")
    if not 0 < sampling.top_p <= 1:
        raise ApiError(400, "'top_p' must be in (0, 1]", "top_p")
    if sampling.temperature < 0:
        raise ApiError(400, "'temperature' must be >= 0", "temperature")
    variables = body.get("chat_template_kwargs") or {}
    if not isinstance(variables, dict):
        raise ApiError(400, "'chat_template_kwargs' must be an object", "chat_template_kwargs")
    seed = body.get("seed")
    request = Request(
        f"req-{counter}",
        messages,
        _number(body, "seed", 0, int) if seed is not None else secrets.randbits(63),
        prefill=prefill,
        json_schema=schema,
        chat_template_kwargs=variables,
        prompt=prompt,
    )
    options = body.get("stream_options") or {}
    stream = bool(body.get("stream"))
    return Parsed(request, sampling, stream, stream and bool(options.get("include_usage")), stops, head)


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

        def _error(self, error: ApiError, headers: dict[str, str] | None = None) -> None:
            self._send(error.status, error.payload(), headers)

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """http.server's own refusals (a bad request line, a method with no handler) in OpenAI's shape; the
            connection closes, since what follows on it cannot be trusted."""
            self.close_connection = True
            try:
                self._error(ApiError(code, message or self.responses.get(code, ("error",))[0]), {"Connection": "close"})
            except OSError:
                pass

        def _body(self) -> bytes:
            """The whole body, read before any answer so that the next request on the connection starts clean."""
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                self.close_connection = True
                raise ApiError(411, "send the body with a Content-Length", None, "length_required")
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY_BYTES:
                self.close_connection = True  # unread bytes would be taken for the next request
                raise ApiError(413 if length > 0 else 400, "bad or too large Content-Length", None, "invalid_body")
            data = b""
            while len(data) < length:
                chunk = self.rfile.read(length - len(data))
                if not chunk:
                    self.close_connection = True
                    raise ApiError(400, "the body ended before its Content-Length", None, "invalid_body")
                data += chunk
            return data

        def _authorize(self) -> None:
            given = self.headers.get("Authorization", "")
            if state.api_key and not hmac.compare_digest(given.encode(), f"Bearer {state.api_key}".encode()):
                raise ApiError(401, "Incorrect or missing API key.", None, "invalid_api_key")

        def _batcher(self) -> Batcher:
            if state.load_error:
                raise ApiError(500, f"model failed to load: {state.load_error}", None, "model_load_failed")
            if state.batcher is None:
                raise ApiError(503, "model is loading", None, "model_loading")
            return state.batcher

        def _not_found(self) -> ApiError:
            return ApiError(404, f"Invalid URL ({self.command} {self.path})", None, "unknown_url")

        def _handle(self, answer: Callable[[bytes], None]) -> None:
            self.streaming = False
            try:
                answer(self._body())
            except Exception as exc:
                if self.streaming:  # the answer has begun: nothing else can be sent on this connection
                    log.exception("stream failed")
                    self.close_connection = True
                    return
                if not isinstance(exc, ApiError):
                    log.exception("request failed")
                    exc = ApiError(500, f"{type(exc).__name__}: {exc}")
                retry = {"Retry-After": "1"} if exc.status == 503 else {}
                self._error(exc, {**retry, **({"Connection": "close"} if self.close_connection else {})})

        def do_GET(self) -> None:
            self._handle(self._get)

        def do_POST(self) -> None:
            self._handle(self._post)

        def do_PUT(self) -> None:
            self._handle(self._refuse)

        do_DELETE = do_PATCH = do_PUT

        def _refuse(self, _: bytes) -> None:
            raise self._not_found()

        def _get(self, _: bytes) -> None:
            if self.path == "/health":
                ready = state.batcher is not None
                payload = {
                    "status": "ok" if ready else "loading",
                    "served": state.served,
                    "peak_in_flight": state.peak_in_flight,
                }
                self._send(200 if ready else 503, payload)
                return
            model = {"id": state.model_name, "object": "model", "created": 0, "owned_by": "smt"}
            if self.path == "/v1/models":
                self._authorize()
                self._send(200, {"object": "list", "data": [model]})
            elif self.path.startswith("/v1/models/"):
                self._authorize()
                if self.path.removeprefix("/v1/models/") != state.model_name:
                    raise ApiError(404, f"The model '{self.path[11:]}' does not exist", "model", "model_not_found")
                self._send(200, model)
            else:
                raise self._not_found()

        def _post(self, raw: bytes) -> None:
            if self.path not in (CHAT, TEXT):
                raise self._not_found()
            self._authorize()
            try:
                body = json.loads(raw or b"{}")
            except (ValueError, UnicodeDecodeError) as exc:
                raise ApiError(400, f"the request body is not valid JSON: {exc}", None, "invalid_json") from None
            model = body.get("model") if isinstance(body, dict) else None
            if model not in (None, state.model_name):
                message = f"The model '{model}' does not exist; this server serves '{state.model_name}'"
                raise ApiError(404, message, "model", "model_not_found")
            with state.lock:
                state.served += 1
                counter = state.served
            self.created = int(time.time())  # one time for every chunk of a stream
            parsed = parse_request(body, counter, chat=self.path == CHAT)
            batcher = self._batcher()
            with state.lock:
                state.in_flight += 1
                state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
            try:
                if parsed.stream:
                    self._stream(batcher, parsed, counter)
                else:
                    self._complete(batcher, parsed, counter)
            finally:
                with state.lock:
                    state.in_flight -= 1

        def _envelope(self, counter: int, chunk: bool) -> dict[str, Any]:
            chat = self.path == CHAT
            kind = ("chat.completion.chunk" if chunk else "chat.completion") if chat else "text_completion"
            return {
                "id": f"{'chatcmpl' if chat else 'cmpl'}-{counter}",
                "object": kind,
                "created": self.created,
                "model": state.model_name,
                "system_fingerprint": state.fingerprint,
            }

        def _choice(self, text: str | None, finish: str | None, chunk: bool, role: bool = False) -> dict[str, Any]:
            if self.path == TEXT:
                return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
            if chunk:
                delta = {"role": "assistant", "content": ""} if role else {} if text is None else {"content": text}
                return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            message = {"role": "assistant", "content": text}
            return {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}

        @staticmethod
        def _usage(completion: Completion) -> dict[str, int]:
            return {
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
                "total_tokens": completion.prompt_tokens + completion.completion_tokens,
            }

        def _visible(self, parsed: Parsed, completion: Completion) -> str:
            return parsed.head + completion.text[len(parsed.request.prefill) :]

        def _complete(self, batcher: Batcher, parsed: Parsed, counter: int) -> None:
            completion = batcher.submit(parsed.request, parsed.sampling).result()
            text, stopped = Visible(parsed.stops).cut(self._visible(parsed, completion))
            payload = self._envelope(counter, chunk=False)
            payload["choices"] = [self._choice(text, "stop" if stopped else completion.finish_reason, chunk=False)]
            payload["usage"] = self._usage(completion)
            self._send(200, payload)

        def _stream(self, batcher: Batcher, parsed: Parsed, counter: int) -> None:
            texts: queue.Queue[str] = queue.Queue()
            future = batcher.submit(parsed.request, parsed.sampling, texts.put)
            # the worker's JSON prefill comes before the tokens: `head` already holds an echoed prompt
            head = parsed.head + batcher.backend.prefill(parsed.request)[len(parsed.request.prefill) :]
            visible = Visible(parsed.stops)
            started = False
            while True:
                try:
                    text = texts.get(timeout=0.05)
                    while not texts.empty():
                        text = texts.get_nowait()
                except queue.Empty:
                    if not future.done() or not texts.empty():
                        continue
                    break
                if not started:
                    self._open_stream(counter, parsed)
                    started = True
                delta = visible.delta(head + text)
                if delta and not self._event({**self._envelope(counter, True), **self._chunk(delta, None, parsed)}):
                    return
            error = future.exception()
            if error is not None and not started:
                raise error if isinstance(error, ApiError) else ApiError(500, f"generation failed: {error}")
            if not started:
                self._open_stream(counter, parsed)
            if error is not None:
                problem = error if isinstance(error, ApiError) else ApiError(500, f"generation failed: {error}")
                self._event(problem.payload())
                self._end_stream()
                return
            completion = future.result()
            final = self._visible(parsed, completion)
            delta = visible.delta(final, final=True)
            if delta and not self._event({**self._envelope(counter, True), **self._chunk(delta, None, parsed)}):
                return
            reason = "stop" if visible.stopped else completion.finish_reason
            if not self._event({**self._envelope(counter, True), **self._chunk(None, reason, parsed)}):
                return
            if parsed.include_usage:
                usage = {**self._envelope(counter, True), "choices": [], "usage": self._usage(completion)}
                if not self._event(usage):
                    return
            self._end_stream()

        def _chunk(self, text: str | None, finish: str | None, parsed: Parsed, role: bool = False) -> dict[str, Any]:
            chunk: dict[str, Any] = {"choices": [self._choice(text, finish, chunk=True, role=role)]}
            if parsed.include_usage:
                chunk["usage"] = None
            return chunk

        def _open_stream(self, counter: int, parsed: Parsed) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.streaming = True
            if self.path == CHAT:
                self._event({**self._envelope(counter, True), **self._chunk(None, None, parsed, role=True)})

        def _write_chunk(self, data: bytes) -> bool:
            try:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
                return True
            except OSError:  # the client went away: the rest of its generation is not sent
                self.close_connection = True
                return False

        def _event(self, payload: dict[str, Any]) -> bool:
            return self._write_chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

        def _end_stream(self) -> None:
            if self._write_chunk(b"data: [DONE]\n\n"):
                self._write_chunk(b"")  # the empty chunk ends the chunked body

    return Handler


def serve(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    dtype: str = "auto",
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
            resolved = BackendSettings("transformers", model, dtype).resolved().dtype  # `auto` as the stages pick it
            state.batcher = Batcher(TransformersBackend(model, dtype=resolved, batch_size=batch_size), batch_size)
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

"""An OpenAI-compatible chat-completions endpoint: a vLLM server, `python -m smt serve`, or a hosted model.

The API key comes from the environment variable named in params (`generation.http.api_key_env`) and is only
ever put in the Authorization header: never in params, logs or manifests, and any text an endpoint sends back
(an error page that echoes the request's headers) has it replaced before it reaches a message or an artifact.
The header goes only to the endpoint's own scheme, host and port: a redirect elsewhere is followed without it.

Requests run concurrently up to `concurrency`, and each completion is handed to the caller as soon as it is
done (`on_done`, which journals it). Connection failures, timeouts, answers cut short, 408/409/429 and 5xx
answers and malformed 200 answers (not JSON, no choices) are retried with exponential backoff (or the server's
Retry-After), up to `max_retries` times, and counted. A 400 answer concerns one request (say, a prompt too long
for the model): that item is rejected with the reason, the run goes on; so is an item whose answers stayed
malformed. Any other refusal (401, 403, 404) is a configuration error and stops the run.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from tqdm import tqdm

from smt.synth.generation import Completion, Request, Sampling, Stats

RETRYABLE = {408, 409, 429, 500, 502, 503, 504}
MAX_BACKOFF_SECONDS = 60.0
REDACTED = "[redacted]"
TRANSPORT_ERRORS = (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException)


class EndpointError(RuntimeError):
    """The endpoint refused the configuration (or stayed unreachable); the message never holds the key."""


class Malformed(ValueError):
    """A 200 answer that is not what the API promises (not JSON, no choices, no message)."""


class Refused(ValueError):
    """A 400 answer: this one request is refused (the item is rejected, the run goes on)."""


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(parts.scheme)


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects like urllib does, but sends the Authorization header (kept out of the headers urllib
    copies) only to the origin it was meant for."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        auth = req.unredirected_hdrs.get("Authorization")
        if new is not None and auth and _origin(newurl) == _origin(req.full_url):
            new.add_unredirected_header("Authorization", auth)
        return new


def chat_answer(answer: Any) -> dict[str, Any]:
    """A chat-completions answer with a first choice that has a message, else Malformed saying what is wrong."""
    if not isinstance(answer, dict):
        raise Malformed(f"expected a JSON object, got {type(answer).__name__}")
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise Malformed("no choices" + (f" (error: {str(answer['error'])[:200]})" if "error" in answer else ""))
    message = choices[0].get("message")
    if not isinstance(message, dict) or not isinstance(message.get("content"), str | None):
        raise Malformed("the first choice has no message content")
    usage = answer.get("usage") or {}
    try:
        int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))
    except (AttributeError, TypeError, ValueError):
        raise Malformed(f"usage is not token counts: {str(usage)[:100]}") from None
    return answer


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Malformed(f"not JSON ({exc}): {raw[:80]!r}") from None


class HTTPBackend:
    name = "http"

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key_env: str | None = None,
        concurrency: int = 8,
        max_retries: int = 5,
        backoff_seconds: float = 1.0,
        timeout_seconds: float = 600.0,
        vllm_extensions: bool = True,
        batch_size: int = 8,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.timeout_seconds = timeout_seconds
        self.vllm_extensions = vllm_extensions
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.batch_size = max(batch_size, concurrency)  # requests per call: enough to keep every slot busy
        self.stats = Stats(extra={"retries": 0, "malformed": 0})
        self._lock = threading.Lock()
        self._opener = urllib.request.build_opener(_Redirects)
        self.system_fingerprint: str | None = None
        self.model = model or self._first_model()

    def _key(self) -> str:
        return os.environ.get(self.api_key_env or "", "")

    def redact(self, text: str) -> str:
        """The text with the API key (if any) replaced: endpoints may echo a request's headers."""
        key = self._key()
        return text.replace(key, REDACTED) if key else text

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, check: Callable[[Any], Any] = lambda a: a
    ) -> Any:
        """One API call with retries: the parsed, checked answer; Refused (400), Malformed (still malformed after
        every retry) or EndpointError (refused otherwise, or unreachable)."""
        url = f"{self.base_url}/{path}"
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        problem, malformed = "", False
        for attempt in range(self.max_retries + 1):
            if attempt:
                with self._lock:
                    self.stats.extra["retries"] += 1
            retry_after = None
            try:
                req = urllib.request.Request(url, data=data, headers=headers, method=method)
                if self._key():  # an unredirected header: urllib does not copy it into a redirect
                    req.add_unredirected_header("Authorization", f"Bearer {self._key()}")
                with self._opener.open(req, timeout=self.timeout_seconds) as answer:
                    raw = answer.read()
                return check(_json(raw))
            except urllib.error.HTTPError as exc:
                detail = self.redact(_body(exc))
                if exc.code == 400:
                    raise Refused(detail) from None
                if exc.code not in RETRYABLE:
                    raise EndpointError(self.redact(f"{method} {url}: HTTP {exc.code}: {detail}")) from None
                problem, malformed = f"HTTP {exc.code}", False
                retry_after = exc.headers.get("Retry-After")
            except Malformed as exc:
                problem, malformed = f"malformed answer: {self.redact(str(exc))}", True
                with self._lock:
                    self.stats.extra["malformed"] += 1
            except TRANSPORT_ERRORS as exc:
                problem, malformed = self.redact(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"), False
            if attempt < self.max_retries:
                wait = min(self.backoff_seconds * 2**attempt, MAX_BACKOFF_SECONDS)
                if retry_after and retry_after.replace(".", "", 1).isdigit():
                    wait = min(float(retry_after), MAX_BACKOFF_SECONDS)
                time.sleep(wait)
        message = f"{method} {url}: still failing after {self.max_retries} retries ({problem})"
        raise Malformed(self.redact(message)) if malformed else EndpointError(self.redact(message))

    def _first_model(self) -> str:
        try:
            listed = self._call("GET", "models").get("data") or []
        except (Malformed, Refused, AttributeError) as exc:
            raise EndpointError(self.redact(f"GET {self.base_url}/models: not a model list ({exc})")) from None
        if not listed or not isinstance(listed[0], dict) or "id" not in listed[0]:
            raise EndpointError(f"{self.redact(self.base_url)}/models lists no model; set generation.http.model")
        return str(listed[0]["id"])

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": "openai-chat-completions",
            "base_url": self.redact(self.base_url),
            "model": self.model,
            "system_fingerprint": self.system_fingerprint,
            "concurrency": self.concurrency,
            "retries": self.stats.extra["retries"],
            "malformed_answers": self.stats.extra["malformed"],
            "structured_outputs": "response_format json_schema",
        }

    def body(self, request: Request, sampling: Sampling) -> dict[str, Any]:
        """The chat-completions request. An answer prefill needs vLLM's continue_final_message; without the
        vLLM extensions it is left out (the prompt files state the format as well)."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(request.messages),
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_new_tokens,
            "seed": request.seed,
        }
        variables = {**self.chat_template_kwargs, **request.chat_template_kwargs}
        if variables:  # vLLM's server and `smt serve` pass them to the chat template
            body["chat_template_kwargs"] = variables
        if request.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": request.json_schema},
            }
        elif request.prefill and self.vllm_extensions:
            body["messages"].append({"role": "assistant", "content": request.prefill})
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        return body

    def complete(self, request: Request, sampling: Sampling) -> Completion:
        body = self.body(request, sampling)
        try:
            answer = self._call("POST", "chat/completions", body, chat_answer)
        except Refused as exc:
            return Completion(request.key, "", "error", 0, 0, error=f"endpoint refused the request: {str(exc)[:300]}")
        except Malformed as exc:
            return Completion(request.key, "", "error", 0, 0, error=f"malformed answers: {str(exc)[:300]}")
        choice = answer["choices"][0]
        usage = answer.get("usage") or {}
        prefilled = request.prefill if body.get("continue_final_message") else ""
        reason = "length" if choice.get("finish_reason") == "length" else "stop"
        text = prefilled + (choice["message"].get("content") or "")
        prompt_tokens, completion_tokens = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        with self._lock:
            self.system_fingerprint = answer.get("system_fingerprint") or self.system_fingerprint
            self.stats.prompt_tokens += prompt_tokens
            self.stats.completion_tokens += completion_tokens
        return Completion(request.key, text, reason, prompt_tokens, completion_tokens)

    def generate(
        self,
        requests: list[Request],
        sampling: Sampling,
        desc: str = "generate",
        progress: bool = True,
        on_done: Callable[[Completion], None] | None = None,
    ) -> list[Completion]:
        """Every request's completion, in request order; `on_done` gets each one as soon as it is finished. When a
        request fails the run (EndpointError), the requests not started are cancelled, and those running still
        reach `on_done` before the error is raised, so no finished completion is lost."""
        started = time.perf_counter()
        done: dict[str, Completion] = {}
        failure: Exception | None = None
        with (
            ThreadPoolExecutor(max_workers=self.concurrency) as pool,
            tqdm(total=len(requests), desc=desc, unit="item", disable=not progress) as bar,
        ):
            futures = [pool.submit(self.complete, r, sampling) for r in requests]
            try:
                for future in as_completed(futures):
                    try:
                        completion = future.result()
                    except Exception as exc:  # the first failure is raised once the others are in
                        failure = failure or exc
                        for other in futures:
                            other.cancel()
                        continue
                    done[completion.key] = completion
                    if on_done is not None:
                        on_done(completion)
                    bar.update(1)
            except BaseException:  # on_done failed, or an interrupt: send nothing more
                for other in futures:
                    other.cancel()
                raise
        self.stats.requests += len(done)
        self.stats.seconds += time.perf_counter() - started
        if failure is not None:
            raise failure
        return [done[r.key] for r in requests]


def _body(exc: urllib.error.HTTPError) -> str:
    try:
        return exc.read()[:300].decode(errors="replace")
    except (OSError, http.client.HTTPException):
        return "(no body)"

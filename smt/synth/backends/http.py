"""An OpenAI-compatible chat-completions endpoint: a vLLM server, `python -m smt serve`, or a hosted model.

The API key comes from the environment variable named in params (`generation.http.api_key_env`) and is only
ever put in the Authorization header: never in params, logs, manifests or error messages. Requests run
concurrently up to `concurrency`; connection failures, timeouts, 408/409/429 and 5xx answers are retried with
exponential backoff (or the server's Retry-After), up to `max_retries` times. A 400 answer concerns one request
(say, a prompt too long for the model): that item is rejected with the reason, the run goes on. Any other
refusal (401, 403, 404) is a configuration error and stops the run.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tqdm import tqdm

from smt.synth.generation import Completion, Request, Sampling, Stats

RETRYABLE = {408, 409, 429, 500, 502, 503, 504}
MAX_BACKOFF_SECONDS = 60.0


class EndpointError(RuntimeError):
    """The endpoint refused the configuration (or stayed unreachable); the message never holds the key."""


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
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.timeout_seconds = timeout_seconds
        self.vllm_extensions = vllm_extensions
        self.batch_size = max(batch_size, concurrency)  # requests per call: enough to keep every slot busy
        self.stats = Stats(extra={"retries": 0})
        self._lock = threading.Lock()
        self.system_fingerprint: str | None = None
        self.model = model or self._first_model()

    def _key(self) -> str:
        return os.environ.get(self.api_key_env or "", "")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One API call with retries; the parsed JSON answer, or EndpointError."""
        url = f"{self.base_url}/{path}"
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if self._key():
            headers["Authorization"] = f"Bearer {self._key()}"
        problem = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                with self._lock:
                    self.stats.extra["retries"] += 1
            retry_after = None
            try:
                req = urllib.request.Request(url, data=data, headers=headers, method=method)
                with urllib.request.urlopen(req, timeout=self.timeout_seconds) as answer:
                    return json.loads(answer.read())
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode(errors="replace")
                if exc.code not in RETRYABLE:
                    if exc.code == 400:
                        return {"error": {"code": 400, "message": detail}}
                    raise EndpointError(f"{method} {url}: HTTP {exc.code}: {detail}") from None
                problem = f"HTTP {exc.code}"
                retry_after = exc.headers.get("Retry-After")
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                problem = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            if attempt < self.max_retries:
                wait = min(self.backoff_seconds * 2**attempt, MAX_BACKOFF_SECONDS)
                if retry_after and retry_after.replace(".", "", 1).isdigit():
                    wait = min(float(retry_after), MAX_BACKOFF_SECONDS)
                time.sleep(wait)
        raise EndpointError(f"{method} {url}: still failing after {self.max_retries} retries ({problem})")

    def _first_model(self) -> str:
        listed = self._call("GET", "models").get("data") or []
        if not listed:
            raise EndpointError(f"{self.base_url}/models lists no model; set generation.http.model")
        return str(listed[0]["id"])

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": "openai-chat-completions",
            "base_url": self.base_url,
            "model": self.model,
            "system_fingerprint": self.system_fingerprint,
            "concurrency": self.concurrency,
            "retries": self.stats.extra["retries"],
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
        answer = self._call("POST", "chat/completions", body)
        if "error" in answer:
            message = str(answer["error"].get("message", answer["error"]))[:300]
            return Completion(request.key, "", "error", 0, 0, error=f"endpoint refused the request: {message}")
        choice = answer["choices"][0]
        usage = answer.get("usage") or {}
        prefilled = request.prefill if body.get("continue_final_message") else ""
        reason = "length" if choice.get("finish_reason") == "length" else "stop"
        text = prefilled + (choice.get("message", {}).get("content") or "")
        with self._lock:
            self.system_fingerprint = answer.get("system_fingerprint") or self.system_fingerprint
            self.stats.prompt_tokens += int(usage.get("prompt_tokens", 0))
            self.stats.completion_tokens += int(usage.get("completion_tokens", 0))
        return Completion(
            request.key, text, reason, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        )

    def generate(
        self, requests: list[Request], sampling: Sampling, desc: str = "generate", progress: bool = True
    ) -> list[Completion]:
        started = time.perf_counter()
        with (
            ThreadPoolExecutor(max_workers=self.concurrency) as pool,
            tqdm(total=len(requests), desc=desc, unit="item", disable=not progress) as bar,
        ):
            futures = [pool.submit(self.complete, r, sampling) for r in requests]
            completions = []
            for future in futures:
                completions.append(future.result())
                bar.update(1)
        self.stats.requests += len(requests)
        self.stats.seconds += time.perf_counter() - started
        return completions

"""`python -m smt serve` needs the model and transformers, not the pipeline's table libraries: it answers a chat
request in a process where polars cannot be imported."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from helpers import ROOT, env

WITHOUT_POLARS = """
import sys

class NoPolars:
    def find_spec(self, name, path=None, target=None):
        if name == "polars" or name.startswith("polars."):
            raise ImportError("polars is not installed here")

sys.meta_path.insert(0, NoPolars())
from smt.cli import main

sys.exit(main(["serve", "--model", sys.argv[1], "--port", sys.argv[2]]))
"""


def test_serve_answers_without_polars(base_model: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "serve_without_polars.py"
    script.write_text(WITHOUT_POLARS)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(base_model), str(port)],
        cwd=ROOT,
        env={**env(), "PYTHONPATH": str(ROOT)},
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
        body = json.dumps({"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 4, "seed": 1})
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions", body.encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as r:
            answer = json.loads(r.read())
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert answer["usage"]["completion_tokens"] > 0 and isinstance(answer["choices"][0]["message"]["content"], str)

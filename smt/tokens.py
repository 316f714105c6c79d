"""A model folder's tokenizer for stages that only count tokens or cut text at token offsets (sections, mix, audit).

Importing transformers to build an `AutoTokenizer` costs such a job about six seconds on a 2-core CPU, more than
the job's own work. A folder with a `tokenizer.json` is loaded with the `tokenizers` library instead (a fifth of a
second): it is the same fast tokenizer transformers wraps, so ids and character offsets are the same
(tests/stages/test_tokens.py checks both against `AutoTokenizer`). A folder without one falls back to
`AutoTokenizer`, whose call this class imitates for the arguments these stages pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


class Encoded(dict):
    """What a transformers tokenizer's call returns, for the keys used here (`.input_ids`, `["offset_mapping"]`)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class FastTokenizer:
    """A `tokenizers.Tokenizer` called like a transformers tokenizer: one text or a list of texts."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(path))
        # A tokenizer.json may carry truncation and padding (all-MiniLM's: 128 tokens); transformers clears both
        # on load and applies them only when a call asks, and no call here does.
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()

    def __call__(
        self,
        text: str | Sequence[str],
        add_special_tokens: bool = True,
        return_offsets_mapping: bool = False,
        verbose: bool = True,
    ) -> Encoded:
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=add_special_tokens) if texts else []
        ids = [e.ids for e in encodings]
        found = Encoded(input_ids=ids[0] if single else ids)
        if return_offsets_mapping:
            offsets = [e.offsets for e in encodings]
            found["offset_mapping"] = offsets[0] if single else offsets
        return found


def load(model_path: str | Path) -> Any:
    """The folder's tokenizer, callable as `tokenizer(texts, add_special_tokens=False).input_ids`."""
    path = Path(model_path) / "tokenizer.json"
    if path.is_file():
        return FastTokenizer(path)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_path))

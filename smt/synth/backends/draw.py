"""Drawing the next token of every row of a batch at once, each row from its own seeded generator.

A row's token depends only on its logits and its generator, never on the other rows, so completions do not depend
on the batch. Nucleus (top-p) filtering looks at the `TOP_K` most likely tokens first and sorts the whole
vocabulary only for a row whose nucleus is wider: a full sort of a 49K vocabulary costs about 3 ms per row on a
CPU core, as much as a decode step's share of the model at batch 16.
"""

from __future__ import annotations

import torch

TOP_K = 512


def nucleus(probs: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens of each row's nucleus (most likely first) and their probabilities, 0 past the nucleus: the
    smallest set of most likely tokens whose mass reaches `top_p`."""
    k = min(TOP_K, probs.shape[-1])
    kept, order = torch.topk(probs, k, dim=-1)
    wide = kept.sum(-1) < top_p  # the nucleus may reach past the top k: those rows are sorted whole
    if bool(wide.any()):
        kept = torch.nn.functional.pad(kept, (0, probs.shape[-1] - k))
        order = torch.nn.functional.pad(order, (0, probs.shape[-1] - k))
        kept[wide], order[wide] = torch.sort(probs[wide], dim=-1, descending=True)
    outside = kept.cumsum(-1) - kept >= top_p
    return order, kept.masked_fill(outside, 0.0)


def draw(logits: torch.Tensor, temperature: float, top_p: float, generators: list[torch.Generator]) -> list[int]:
    """One token per row of `logits` ([rows, vocabulary]): the argmax at temperature 0, else a draw by inverse
    CDF from the row's tempered, nucleus-filtered distribution with one uniform number from its generator."""
    logits = logits.float().cpu()
    if temperature == 0:
        return logits.argmax(-1).tolist()
    probs = torch.softmax(logits / temperature, dim=-1)
    order = None
    if top_p < 1.0:
        order, probs = nucleus(probs, top_p)
    cdf = probs.cumsum(-1)
    uniform = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in generators]).to(cdf.dtype)
    index = torch.searchsorted(cdf, (uniform * cdf[:, -1]).unsqueeze(1), right=True).clamp(max=cdf.shape[-1] - 1)
    tokens = index if order is None else order.gather(1, index)
    return tokens.squeeze(1).tolist()

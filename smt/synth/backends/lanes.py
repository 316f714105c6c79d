"""How few rows a batch-invariant decode step may run: the smallest row count whose every row comes out bit for bit
as it does among `batch_size` rows, on this machine.

A CPU's matmul kernels pick their blocking by the number of rows, and each blocking rounds differently, so the
transformers backend keeps a decode step's row count fixed (smt.synth.backends.transformers). But the kernels come
in tiers: measured on a 2-core Xeon with AVX-512 at SmolLM2-135M's shapes, every row is identical for any count from
4 to 15, while 1, 2-3 and 16 and more are each a tier of their own (the widest layers: 2-15 and 16-32); in bfloat16
on AMX-BF16 tiles every count from 1 to 15 computes alike. Within the
tier of `batch_size`, a step may drop idle lanes, which the tail of a generation call (the last requests still
running, nothing waiting) has most of. The probe runs the model itself on random tokens at each count and compares
the logits bitwise: kernels are chosen by shapes and threads, never by values, so one probe holds for every input.
"""

from __future__ import annotations

import torch


@torch.inference_mode()
def floor(model: torch.nn.Module, batch_size: int, seed: int = 0) -> int:
    """The smallest n <= batch_size such that a one-token forward pass of any m in n..batch_size rows gives each
    row the logits it gets among batch_size rows, bit for bit."""
    vocab = model.get_input_embeddings().num_embeddings
    device = next(model.parameters()).device
    ids = torch.randint(vocab, (batch_size, 1), generator=torch.Generator().manual_seed(seed)).to(device)
    full = model(input_ids=ids, use_cache=False).logits
    smallest = batch_size
    for rows in range(batch_size - 1, 0, -1):
        if not torch.equal(model(input_ids=ids[:rows], use_cache=False).logits, full[:rows]):
            break
        smallest = rows
    return smallest

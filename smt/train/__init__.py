"""Training: the token-budgeted mix, TRL SFT (full or LoRA), launches over processes, resumable checkpoints and
the compute it spent."""

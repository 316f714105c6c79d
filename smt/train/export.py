"""The trained model as one plain Hugging Face folder, and the loss curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smt.train.spec import TrainSpec


def full_state_dict_for_the_final_save(trainer: Any) -> None:
    """FSDP checkpoints during training are sharded (envs/accelerate/fsdp.yaml: each rank writes its own part,
    about 12 bytes per parameter over all ranks with AdamW, never gathered on one machine); the final model is
    saved as one full state dict, which the Trainer writes only under FULL_STATE_DICT."""
    plugin = trainer.accelerator.state.fsdp_plugin
    plugin.state_dict_config = plugin.optim_state_dict_config = None  # the full configs go with the full type
    plugin.set_state_dict_type("FULL_STATE_DICT")


def final_model(spec: TrainSpec, trainer: Any) -> Any:
    """The trained model as one plain transformers model (LoRA adapters merged) on rank 0, None on the other
    ranks. Rank 0 holds the whole model under DDP; a sharded one (FSDP, ZeRO-3) is first gathered by the
    Trainer into the checkpoint folder (a collective call: every rank takes part) and read back."""
    import torch
    from transformers import AutoModelForCausalLM

    lora = spec["mode"] == "lora"
    if trainer.is_fsdp_enabled:
        full_state_dict_for_the_final_save(trainer)
    if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
        gathered = Path(trainer.args.output_dir) / "final"
        trainer.save_model(str(gathered))
        if not trainer.is_world_process_zero():
            return None
        if not lora:
            return AutoModelForCausalLM.from_pretrained(gathered, dtype=torch.float32)
        from peft import PeftModel

        model = AutoModelForCausalLM.from_pretrained(spec.base_model, dtype=torch.float32)
        return PeftModel.from_pretrained(model, gathered).merge_and_unload()
    if not trainer.is_world_process_zero():
        return None
    model = trainer.accelerator.unwrap_model(trainer.model)
    return model.merge_and_unload() if lora else model


def export_model(model: Any, base: str, out: Path) -> None:
    """A plain Hugging Face folder (config.json, generation_config.json, safetensors, tokenizer) that
    transformers and vLLM load like a hub model, in the base model's dtype."""
    import torch
    from transformers import AutoConfig, AutoTokenizer

    dtype = getattr(AutoConfig.from_pretrained(base), "dtype", None) or torch.float32
    model.to(dtype).save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)


def loss_csv(history: list[dict[str, Any]]) -> str:
    lines = ["step,loss,learning_rate,tokens_seen"]
    lines += [
        f"{h['step']},{h['loss']},{h.get('learning_rate', '')},{h.get('num_input_tokens_seen', '')}"
        for h in history
        if "loss" in h
    ]
    return "\n".join(lines) + "\n"

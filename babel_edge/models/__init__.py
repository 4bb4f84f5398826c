"""Models: loading (embedded default, GGUF, HF directories) and architecture adapters."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .adapters import (ADAPTERS, Adapter, FFNView, UnsupportedArchitectureError, adapter_for,
                       ffn_layers, model_adapter)
from .loader import (DEFAULT_MODEL, EMBEDDED, LoadedModel, as_loaded, cache_dir,
                     check_architecture, embedded_gguf, fingerprint, load_model, read_config,
                     resolve_model_dir)

__all__ = [
    "ADAPTERS", "Adapter", "FFNView", "UnsupportedArchitectureError", "adapter_for", "ffn_layers",
    "model_adapter", "DEFAULT_MODEL", "EMBEDDED", "LoadedModel", "cache_dir", "check_architecture",
    "embedded_gguf", "fingerprint", "load_model", "read_config", "resolve_model_dir",
    "describe_model", "gguf_for", "as_loaded",
]


def gguf_for(spec: str | None) -> Path:
    """The GGUF file behind --model, for engines that run GGUF (llama.cpp)."""
    spec = spec or DEFAULT_MODEL
    if spec in EMBEDDED:
        return embedded_gguf(spec)
    p = Path(spec).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return p
    raise UserError(f"llama.cpp runs GGUF files: give a .gguf file or an embedded model name as "
                    f"--model, not '{spec}'")


def describe_model(spec: str | None) -> dict:
    """Architecture facts of a model, read from its files without loading weights."""
    from ..io import safetensors_params

    model_dir = resolve_model_dir(spec)
    cfg = read_config(model_dir)
    arch = check_architecture(model_dir)
    ffn = cfg.get("intermediate_size")
    return {
        "path": str(model_dir),
        "architecture": f"{adapter_for(arch).family} ({arch})",
        "layers": cfg.get("num_hidden_layers"),
        "hidden size": cfg.get("hidden_size"),
        "FFN width": ffn if not isinstance(ffn, list) else f"per layer {ffn}",
        "attention heads / KV heads": f"{cfg.get('num_attention_heads')} / {cfg.get('num_key_value_heads')}",
        "vocabulary": cfg.get("vocab_size"),
        "parameters": f"{safetensors_params(model_dir):,}",
        "fingerprint": fingerprint(model_dir),
    }

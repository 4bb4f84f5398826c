"""Physical removal of FFN neurons, and the pruned model directory on disk.

Removal, per layer, with K the sorted kept neuron ids (no masks):
    gate.weight [F, H] -> [k, H]   (rows K)       up.weight [F, H] -> [k, H]   (rows K)
    down.weight [H, F] -> [H, k]   (columns K, or the refit columns from compensation)
The Linear modules are replaced by new ones of the new width, so parameter
counts, file sizes and FLOPs really shrink.

Directory layout (Hugging Face style, so tools that read HF dirs mostly work):
    config.json           the family's own config; `intermediate_size` = the widest layer
                          (transformers' configs reject a list there) plus
                          `ffn_widths`: [width of layer 0, 1, ...]
    model.safetensors     weights (tied embeddings stored once, as transformers does)
    generation_config.json
    tokenizer files       copied from the source model directory
    licence files         copied (e.g. the Gemma Terms of Use must travel with the weights)
    pruning_plan.json     what was kept and why, plus provenance (plan.py)
When every layer has the same width, plain `AutoModelForCausalLM.from_pretrained`
loads the directory too; with per-layer widths only `load_pruned` (and
`babel_edge.models.load_model`, which calls it) can, because it rebuilds each
MLP's Linear layers at their saved width before loading the weights.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..errors import UserError
from ..io import atomic_dir
from ..models.adapters import ffn_layers, model_adapter
from .plan import PLAN_FILE, PruningPlan

WIDTHS_KEY = "ffn_widths"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json",
                   "chat_template.jinja", "chat_template.json")
LICENCE_GLOBS = ("LICENSE*", "LICENCE*", "NOTICE*", "*TERMS*", "USE_POLICY*")


def _linear(in_f: int, out_f: int, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    lin = nn.Linear(in_f, out_f, bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        lin.weight.copy_(weight)
        if bias is not None:
            lin.bias.copy_(bias)
    lin.requires_grad_(False)
    return lin


def shrink_layer(model, layer: int, kept: torch.Tensor, down_weight: torch.Tensor | None = None) -> None:
    """Keep only neurons `kept` (sorted ids) of FFN `layer`; down_weight [H, k] replaces
    the kept down columns when given (compensation)."""
    ad = model_adapter(model)
    v = ffn_layers(model)[layer]
    kept = kept.to(torch.long).to(v.gate.weight.device)
    k = int(kept.numel())
    hidden = v.gate.in_features
    if down_weight is None:
        down_weight = v.down.weight[:, kept]
    if tuple(down_weight.shape) != (v.down.out_features, k):
        raise ValueError(f"layer {layer}: down weight {tuple(down_weight.shape)} for {k} neurons")
    sub = lambda lin: lin.bias[kept] if lin.bias is not None else None  # noqa: E731
    setattr(v.mlp, ad.gate, _linear(hidden, k, v.gate.weight[kept], sub(v.gate)))
    setattr(v.mlp, ad.up, _linear(hidden, k, v.up.weight[kept], sub(v.up)))
    setattr(v.mlp, ad.down, _linear(k, v.down.out_features, down_weight.to(v.down.weight.dtype),
                                    v.down.bias))
    if hasattr(v.mlp, "intermediate_size"):
        v.mlp.intermediate_size = k


def ffn_widths(model) -> list[int]:
    return [v.width for v in ffn_layers(model)]


def set_width_config(model) -> None:
    """Record the current per-layer widths in the model's config."""
    widths = ffn_widths(model)
    model.config.intermediate_size = max(widths)
    setattr(model.config, WIDTHS_KEY, widths)


def ffn_params(model) -> int:
    return sum(sum(p.numel() for p in v.mlp.parameters()) for v in ffn_layers(model))


# ------------------------------------------------------------------ save

def _copy_side_files(src: Path | None, dst: Path, tokenizer_files: bool = True) -> list[str]:
    copied = []
    if src is None or not src.is_dir():
        return copied
    names = set(TOKENIZER_FILES) if tokenizer_files else set()
    for pat in LICENCE_GLOBS:
        names |= {p.name for p in src.glob(pat)}
    for name in sorted(names):
        p = src / name
        if p.is_file():
            shutil.copy2(p, dst / name)
            copied.append(name)
    return copied


def save_pruned(model, out_dir: str | Path, plan: PruningPlan | None = None,
                source_dir: Path | None = None, tokenizer=None, vocab=None) -> Path:
    """Write `model` (pruned or dense) as a pruned-model directory, atomically (an earlier
    pruned model at `out_dir` is swapped out only once the new one is complete).

    Tokenizer and licence files are copied from `source_dir`; when it has no
    tokenizer files, `tokenizer.save_pretrained` writes them instead. A trimmed
    vocabulary (`vocab`, a babel_edge.vocab.TrimmedVocab) writes its own tokenizer
    files and none are copied.
    """
    out = Path(out_dir)
    check_out_dir(out)
    with atomic_dir(out) as tmp:
        set_width_config(model)
        model.save_pretrained(tmp, safe_serialization=True)
        copied = _copy_side_files(source_dir, tmp, tokenizer_files=vocab is None)
        if vocab is not None:
            vocab.write(tmp)
        elif not any(n in copied for n in ("tokenizer.json", "tokenizer.model", "vocab.json")):
            if tokenizer is None:
                raise ValueError("no tokenizer files to copy and no tokenizer given")
            tokenizer.save_pretrained(tmp)
        if plan is not None:
            plan.write(tmp)
    return out


def check_out_dir(out: Path) -> None:
    """UserError unless `out` is free or an earlier pruned-model directory (cheap; run it
    before loading anything)."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / PLAN_FILE).exists())):
        raise UserError(f"--out '{out}' exists and is not a pruned-model directory; choose a new "
                        f"path (an earlier pruned model at the same path is replaced)")


# ------------------------------------------------------------------ load

def _state_dict(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise UserError(f"'{model_dir}' has no .safetensors weights; give a directory written by "
                        f"'babel-edge prune'")
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        sd.update(load_file(str(f)))
    return sd


def build_with_widths(config, widths: Sequence[int] | None, dtype=None):
    """An uninitialised model of `config` whose FFN layers have `widths`."""
    from transformers import AutoModelForCausalLM
    from transformers.modeling_utils import no_init_weights

    with no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype or torch.float32)
    if widths is not None:
        views = ffn_layers(model)
        if len(widths) != len(views):
            raise UserError(f"config lists {len(widths)} FFN widths for {len(views)} layers; "
                            f"the directory is damaged, prune again")
        for v, w in zip(views, widths):
            if w != v.width:
                shrink_layer(model, v.index, torch.arange(int(w)))
    return model


def load_pruned(model_dir: str | Path, dtype=None, device: str = "cpu"):
    """A transformers causal LM from a pruned (or dense) directory written by `save_pruned`.

    The config's `ffn_widths` gives every layer's width; the model is built at
    those widths and the saved weights are loaded strictly (only tied weights
    may be absent from the file). forward and generate work as for any HF model.
    """
    from transformers import AutoConfig, GenerationConfig

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise UserError(f"'{model_dir}' has no config.json; give a directory written by "
                        f"'babel-edge prune'")
    config = AutoConfig.from_pretrained(str(model_dir))
    widths = getattr(config, WIDTHS_KEY, None)
    sd = _state_dict(model_dir)
    model = build_with_widths(config, widths, dtype=dtype or next(iter(sd.values())).dtype)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    tied = set(_tied_keys(model))
    if unexpected or set(missing) - tied:
        raise UserError(f"'{model_dir}' does not match its config (missing "
                        f"{sorted(set(missing) - tied)[:3]}, unexpected {unexpected[:3]}); "
                        f"the directory is damaged, prune again")
    model.tie_weights()
    if (model_dir / "generation_config.json").exists():
        model.generation_config = GenerationConfig.from_pretrained(str(model_dir))
    return model.to(device).eval()


def _tied_keys(model) -> list[str]:
    keys = getattr(model, "_tied_weights_keys", None) or []
    if isinstance(keys, dict):
        keys = list(keys)
    if not getattr(model.config, "tie_word_embeddings", False):
        return []
    return list(keys)


def file_size(model_dir: str | Path) -> int:
    """Bytes of the weight files."""
    return sum(f.stat().st_size for f in Path(model_dir).glob("*.safetensors"))

"""HF weights and config -> GGUF tensors and hyper-parameters, common to every target.

Target-specific rewrites live in their own modules (gemma4.py, padded.py, deci.py) and
are called through the table in layout.py; this module does what all targets share:
GGUF tensor names (gguf-py's TensorNameMap), Gemma's RMSNorm weights stored as 1 + w,
q/k rows interleaved for rope type NORM, rope scaling as per-frequency factors, and
the query scale llama.cpp's own Gemma graphs apply.
"""
from __future__ import annotations

import math

import numpy as np

from ...errors import UserError


def head_dim(cfg) -> int:
    return int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)


def rope_factors(cfg) -> np.ndarray | None:
    """Per-frequency divisors of the rotary angle that reproduce cfg.rope_scaling (None: none).

    ggml divides each rotary angle by rope_freqs[i]; HF changes inv_freq instead,
    so the factors are inv_freq(default) / inv_freq(scaled). Only static scalings
    without an attention factor can be expressed this way.
    """
    rs = getattr(cfg, "rope_scaling", None)
    if not rs:
        return None
    rtype = rs.get("rope_type", rs.get("type", "default"))
    if rtype == "default":
        return None
    if rtype not in ("linear", "llama3"):
        raise UserError(f"rope scaling '{rtype}' cannot be written to GGUF by babel-edge "
                        f"(supported: none, linear, llama3)")
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    scaled, attn = ROPE_INIT_FUNCTIONS[rtype](cfg, "cpu")
    base, _ = ROPE_INIT_FUNCTIONS["default"](cfg, "cpu")
    if abs(float(attn) - 1.0) > 1e-6:
        raise UserError(f"rope scaling '{rtype}' with an attention factor cannot be written to GGUF")
    return (base.double() / scaled.double()).float().numpy()


def layer_types(cfg, n: int) -> list[str]:
    lt = getattr(cfg, "layer_types", None)
    if lt:
        return list(lt)
    return ["full_attention"] * n


def write_hparams(w, model, layout) -> None:
    """Architecture keys for `layout.target` into GGUFWriter `w` (whose arch is set); the
    target's own extra keys come from its module (layout.Target.extra_hparams)."""
    cfg = model.config
    t = layout.target
    n = cfg.num_hidden_layers
    hd = head_dim(cfg)
    w.add_context_length(int(cfg.max_position_embeddings))
    w.add_embedding_length(int(cfg.hidden_size))
    w.add_block_count(n)
    w.add_feed_forward_length([int(x) for x in layout.stored] if t.per_layer_ffn
                              else int(layout.stored[0]))
    w.add_head_count(int(cfg.num_attention_heads))
    w.add_head_count_kv(int(cfg.num_key_value_heads))
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(float(cfg.rope_theta))
    w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    w.add_vocab_size(int(cfg.vocab_size))

    factors = rope_factors(cfg)
    if factors is not None and not t.loads_rope_freqs:     # else: rope_freqs tensor (gguf_tensors)
        if not np.allclose(factors, factors[0]):
            raise UserError(f"this rope scaling cannot be written for llama.cpp's '{t.arch}'")
        import gguf

        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(factors[0]))

    if t.gemma:
        types = layer_types(cfg, n)
        swa = [lt == "sliding_attention" for lt in types]
        if getattr(cfg, "sliding_window", None):
            w.add_sliding_window(int(cfg.sliding_window))
            w.add_sliding_window_pattern(swa)
        fc = getattr(cfg, "final_logit_softcapping", None)
        if t.arch == "gemma2":
            w.add_attn_logit_softcapping(float(cfg.attn_logit_softcapping or 0.0))
            w.add_rope_freq_base_swa(float(cfg.rope_theta))
        else:
            if getattr(cfg, "attn_logit_softcapping", None):
                raise UserError("Gemma 3 with attention-logit soft-capping has no llama.cpp "
                                "architecture; cannot export")
            w.add_rope_freq_base_swa(float(getattr(cfg, "rope_local_base_freq", 10000.0)))
        # gemma4 defaults to soft-capping at 30 when the key is missing; gemma3 to none.
        w.add_final_logit_softcapping(float(fc or 0.0))
    if t.extra_hparams is not None:
        t.extra_hparams(w, model, layout)


def interleave_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """HF q/k rows [heads*hd, ...] with rotary halves split -> adjacent pairs (rope NORM).

    Within a head, HF rotates dim j with dim j + hd/2; ggml's NORM rope rotates
    2i with 2i+1. New row 2i = old row i, new row 2i+1 = old row i + hd/2.
    """
    shape = w.shape
    hd = shape[0] // n_heads
    x = w.reshape(n_heads, 2, hd // 2, *shape[1:])
    return np.ascontiguousarray(np.swapaxes(x, 1, 2)).reshape(shape)


def _llama_attention_scale(cfg, arch: str, n_layers: int) -> float:
    """The query scale llama.cpp's gemma2/gemma3 graphs apply (their 27B rule included)."""
    big = {"gemma2": 46, "gemma3": 62}.get(arch)
    if big is not None and n_layers == big:
        return 1.0 / math.sqrt(cfg.hidden_size / cfg.num_attention_heads)
    return 1.0 / math.sqrt(head_dim(cfg))


def hf_tensors(model) -> dict[str, np.ndarray]:
    """The model's weights by HF name as float32 numpy (views where possible), tied copies dropped."""
    import torch

    sd = model.state_dict()
    out, seen = {}, {}
    for name, t in sd.items():
        if name.endswith("rotary_emb.inv_freq"):
            continue
        key = (t.data_ptr(), tuple(t.shape))
        if key in seen and t.numel() > 0:
            continue          # tied (lm_head = embed_tokens): llama.cpp reuses token_embd
        seen[key] = name
        out[name] = t.detach().to(torch.float32).cpu().numpy()
    return out


def convert_group(hf: dict[str, np.ndarray], cfg, layout, layers, global_part: bool,
                  observed: list[float] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """GGUF name -> float32 array for one group of HF tensors (those of `layers`, and with
    `global_part` the embedding, final norm and head), with every rewrite applied. The
    in-memory export passes the whole model as one group; the streamed export (stream.py)
    passes one layer at a time — the same code, so both write the same tensors."""
    import gguf

    from .padded import pad_tensors

    t = layout.target
    n = cfg.num_hidden_layers
    arch_enum = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == t.arch)
    names = gguf.get_tensor_name_map(arch_enum, n)
    out: dict[str, np.ndarray] = {}
    for hf_name, arr in hf.items():
        g = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if g is None:
            raise RuntimeError(f"no GGUF tensor name for '{hf_name}' in architecture '{t.arch}'")
        out[g] = arr
    for il in layers:
        p = f"blk.{il}."
        if t.gemma:
            for k in [k for k in out if k.startswith(p) and k.endswith("norm.weight")]:
                out[k] = out[k] + np.float32(1.0)
        if t.interleaved_rope:
            for kind, heads in (("attn_q", cfg.num_attention_heads), ("attn_k", cfg.num_key_value_heads)):
                for suf in (".weight", ".bias"):
                    if p + kind + suf in out:
                        out[p + kind + suf] = interleave_rope_rows(out[p + kind + suf], heads)
    pad_tensors(out, layout.widths, layout.stored, layers)
    if global_part:
        if t.gemma:
            out["output_norm.weight"] = out["output_norm.weight"] + np.float32(1.0)
        # rope scaling as per-frequency divisors (ggml divides each rotary angle by rope_freqs[i])
        factors = rope_factors(cfg) if t.loads_rope_freqs else None
        if factors is not None:
            out["rope_freqs.weight"] = factors.astype(np.float32)
    info = t.rewrite(out, cfg, layout, list(layers), global_part, observed) if t.rewrite else {}
    return out, info


def gguf_tensors(model, layout, calib_ids=None) -> tuple[dict[str, np.ndarray], dict]:
    """GGUF name -> float32 array for `layout.target`, with every rewrite applied, for a model
    held in memory. calib_ids: token-id sequences a target may measure on (gemma4 reports its
    V norm's gain error on them). Returns (tensors, info) where info records the rewrites."""
    observed = layout.target.measure(model, calib_ids) if layout.target.measure else None
    return convert_group(hf_tensors(model), model.config, layout,
                         range(model.config.num_hidden_layers), True, observed)


def fold_query_scale(out: dict[str, np.ndarray], cfg, layout, layers, global_part: bool,
                     observed=None) -> dict:
    """Native gemma2/gemma3: llama.cpp applies its own query scale; fold the difference to
    query_pre_attn_scalar^-1/2 into attn_q (gemma2) or attn_q_norm (gemma3)."""
    arch, n = layout.target.arch, cfg.num_hidden_layers
    want = (getattr(cfg, "query_pre_attn_scalar", None) or head_dim(cfg)) ** -0.5
    c = want / _llama_attention_scale(cfg, arch, n)
    if abs(c - 1.0) <= 1e-12:
        return {}
    kind = "attn_q.weight" if arch == "gemma2" else "attn_q_norm.weight"
    for il in layers:
        out[f"blk.{il}.{kind}"] = out[f"blk.{il}.{kind}"] * np.float32(c)
    return {"query_scale_folded": {"tensor": kind, "factor": c}}

"""`gemma4`: where Gemma 3 goes when its layers have different FFN widths.

llama.cpp's `gemma4` builds the same block as Gemma 3 (sandwich norms, q/k norms,
GeGLU-tanh, sliding-window layers with their own rope base) and reads each layer's FFN
width with `hparams.n_ff(il)`. Three graph differences are removed by weight rewrites:
  * attention scale fixed at 1.0   -> q_norm weight x query_pre_attn_scalar^-1/2
  * a weightless RMS norm on V     -> attn_v scaled by 2^-k (kept in F32/BF16) so that
    mean(v^2) << eps and the norm is the fixed linear map v/sqrt(eps); attn_output is
    scaled by sqrt(eps)*2^k to undo it (see linearise_v_norm for k and its error bound).
  * final_logit_softcapping defaults to 30 -> written explicitly (0 = off; tensors.py)
plus required keys (per-layer sliding pattern, SWA head sizes, per-layer embedding size 0)
and a rope_freqs tensor (ones) on full-attention layers. The V rewrite depends on
llama.cpp internals (weightless V norm, eps, fixed scale): the llama.cpp version is
pinned and a regression test compares with the zero-padded `gemma3` file.
"""
from __future__ import annotations

import math

import numpy as np

from .tensors import head_dim, layer_types

# gemma4's linearised V norm: the largest per-token, per-head gain error any input can
# cause (a bound from the weights alone; see linearise_v_norm).
V_NORM_TOL = 1e-3
# gemma4's linearised V needs attn_v's tiny values (2^-k scale) kept with an 8-bit exponent:
# F32 in f32/f16 files, BF16 (same exponent range, half the bytes) in quantized ones.
V_WIDE_TYPE = "bf16"
V_TENSOR_PATTERN = r"attn_v\.weight"


def write_hparams(w, model, layout) -> None:
    """The keys gemma4 needs beyond Gemma 3's (tensors.write_hparams wrote those)."""
    cfg = model.config
    hd = head_dim(cfg)
    if not getattr(cfg, "sliding_window", None):
        w.add_sliding_window(int(cfg.max_position_embeddings))
        w.add_sliding_window_pattern([lt == "sliding_attention"
                                      for lt in layer_types(cfg, cfg.num_hidden_layers)])
    w.add_key_length_swa(hd)
    w.add_value_length_swa(hd)
    w.add_embedding_length_per_layer_input(0)


def rewrite(out: dict[str, np.ndarray], cfg, layout, layers, global_part: bool,
            observed: list[float] | None = None) -> dict:
    """Query scale folded into attn_q_norm, V norm linearised (for `layers`), rope_freqs of
    ones (with the global tensors). `observed`: V's peak power per layer on calibration text
    (observed_v_power), reported, never used to choose the scale."""
    hd = head_dim(cfg)
    if global_part and "rope_freqs.weight" not in out:
        # gemma4 requires the tensor and applies it on full-attention layers only
        out["rope_freqs.weight"] = np.ones(hd // 2, dtype=np.float32)
    want = (getattr(cfg, "query_pre_attn_scalar", None) or hd) ** -0.5
    for il in layers:
        out[f"blk.{il}.attn_q_norm.weight"] = out[f"blk.{il}.attn_q_norm.weight"] * np.float32(want)
    info = {"query_scale_folded": {"tensor": "attn_q_norm.weight", "factor": want}}
    if layers:
        info["v_norm_linearised"] = linearise_v_norm(out, cfg, layers, hd, observed)
    return info


def quant_overrides() -> dict[str, str]:
    """Tensor types llama.cpp's quantizer must keep (regex -> type)."""
    return {V_TENSOR_PATTERN: V_WIDE_TYPE}


def observed_v_power(model, calib_ids) -> list[float] | None:
    """Per layer: the largest mean(v^2) of one V head over the calibration tokens (None: no text).

    Gemma 3 attention modules name their V projection `self_attn.v_proj`.
    """
    import torch

    if not calib_ids:
        return None
    from ...models.adapters import decoder_layers

    layers = decoder_layers(model)
    hd = head_dim(model.config)
    peak = [0.0] * len(layers)

    def hook(i):
        def post(_mod, _args, out):          # returns None: the output is left as it is
            v = out.detach().double().reshape(*out.shape[:-1], -1, hd)
            peak[i] = max(peak[i], float((v ** 2).mean(-1).max()))
        return post

    hooks = [layer.self_attn.v_proj.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        with torch.inference_mode():
            for ids in calib_ids:
                model(input_ids=torch.tensor([list(ids)]))
    finally:
        for h in hooks:
            h.remove()
    return peak


def linearise_v_norm(out: dict[str, np.ndarray], cfg, layers, hd: int,
                      observed: list[float] | None) -> dict:
    """gemma4 RMS-normalises V without a weight; make that norm a fixed scale (see module doc).

    With v' = 2^-k v, rmsnorm(v') = v' / sqrt(mean(v'^2) + eps) = v'/sqrt(eps) * (1 - d),
    0 <= d <= mean(v'^2) / (2 eps): a per-token, per-head gain error. attn_output absorbs
    sqrt(eps) * 2^k. k per layer is the smallest with d <= V_NORM_TOL for EVERY input: for
    x = rmsnorm(h) * g (|rmsnorm(h)| = sqrt(hidden)), |W_v,head x| <= sigma_max(W_v,head
    diag(g)) * sqrt(hidden), so mean(v'^2) <= 4^-k sigma^2 hidden / head_dim. The gain error
    on the calibration text (usually 10^1..10^4 below the bound) is reported, never used to
    choose k: a text louder than the calibration one could otherwise exceed it.
    """
    import torch

    eps = float(np.float32(cfg.rms_norm_eps))
    hidden = cfg.hidden_size
    ks = []
    layers = list(layers)
    for il in layers:
        p = f"blk.{il}."
        wv = torch.from_numpy(out[p + "attn_v.weight"]).double()          # [kv*hd, hidden]
        g = torch.from_numpy(out[p + "attn_norm.weight"]).double()        # 1 + w
        m = (wv * g[None, :]).reshape(-1, hd, hidden)                     # [kv, hd, hidden]
        bound = float(torch.linalg.matrix_norm(m, ord=2).max()) * math.sqrt(hidden)
        k_bound = max(0, math.ceil(math.log2(max(bound, 1e-30) / math.sqrt(2 * V_NORM_TOL * hd * eps))))
        k = k_bound
        out[p + "attn_v.weight"] = (out[p + "attn_v.weight"] * np.float32(2.0 ** -k)).astype(np.float32)
        out[p + "attn_output.weight"] = (out[p + "attn_output.weight"].astype(np.float64)
                                         * (math.sqrt(eps) * 2.0 ** k)).astype(np.float32)
        ks.append(k)
    info = {"log2_v_scale": [-k for k in ks], "gain_error_bound": V_NORM_TOL, "eps": eps,
            "attn_v_kept_wide": True,
            "rule": "V scaled by 2^-k with k the smallest giving a gain error <= the bound for "
                    "every input (from sigma_max(W_v diag(g)) sqrt(hidden)); attn_output x "
                    "sqrt(eps) 2^k"}
    if observed is not None:
        info["max_gain_error_on_calibration"] = max(
            observed[il] * 4.0 ** -k / eps / 2 for il, k in zip(layers, ks))
    return info

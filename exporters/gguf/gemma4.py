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

# gemma4's linearised V norm: gain error guaranteed for every input (bound), and the
# peak mean(v'^2)/eps aimed at on calibration text (see linearise_v_norm).
V_NORM_TOL = 1e-4
V_NORM_OBSERVED = 1e-4
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


def rewrite(out: dict[str, np.ndarray], model, layout, calib_ids=None) -> dict:
    """Query scale folded into attn_q_norm, V norm linearised, rope_freqs of ones."""
    cfg = model.config
    n = cfg.num_hidden_layers
    hd = head_dim(cfg)
    if "rope_freqs.weight" not in out:
        # gemma4 requires the tensor and applies it on full-attention layers only
        out["rope_freqs.weight"] = np.ones(hd // 2, dtype=np.float32)
    want = (getattr(cfg, "query_pre_attn_scalar", None) or hd) ** -0.5
    for il in range(n):
        out[f"blk.{il}.attn_q_norm.weight"] = out[f"blk.{il}.attn_q_norm.weight"] * np.float32(want)
    return {"query_scale_folded": {"tensor": "attn_q_norm.weight", "factor": want},
            "v_norm_linearised": linearise_v_norm(out, cfg, n, hd,
                                                  observed_v_power(model, calib_ids))}


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
    from ...models.adapters import _get, model_adapter

    layers = _get(model, model_adapter(model).layers)
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


def linearise_v_norm(out: dict[str, np.ndarray], cfg, n: int, hd: int,
                      observed: list[float] | None) -> dict:
    """gemma4 RMS-normalises V without a weight; make that norm a fixed scale (see module doc).

    With v' = 2^-k v, rmsnorm(v') = v' / sqrt(mean(v'^2) + eps) = v'/sqrt(eps) * (1 - d),
    d ~ mean(v'^2) / (2 eps): a per-token, per-head gain error. attn_output absorbs
    sqrt(eps) * 2^k. k per layer is the smallest that keeps d small:
      * guaranteed: for x = rmsnorm(h) * g, |W_v,head x| <= sigma_max(W_v,head diag(g)) *
        sqrt(hidden), so d <= V_NORM_TOL for every input;
      * observed (when calibration text is given): the bound is loose by 10^1..10^4 in
        mean(v^2), and a needlessly tiny V (rms ~1e-4) lands in F16's subnormal range in
        the KV cache and in Q8_0's activation scales, costing more than d itself. So k is
        lowered until the calibration peak gives d = V_NORM_OBSERVED / 2 (an input 10x
        louder in V than anything seen still gets d < 0.5%).
    """
    import torch

    eps = float(np.float32(cfg.rms_norm_eps))
    hidden = cfg.hidden_size
    ks, kb = [], []
    for il in range(n):
        p = f"blk.{il}."
        wv = torch.from_numpy(out[p + "attn_v.weight"]).double()          # [kv*hd, hidden]
        g = torch.from_numpy(out[p + "attn_norm.weight"]).double()        # 1 + w
        m = (wv * g[None, :]).reshape(-1, hd, hidden)                     # [kv, hd, hidden]
        bound = float(torch.linalg.matrix_norm(m, ord=2).max()) * math.sqrt(hidden)
        k_bound = max(0, math.ceil(math.log2(max(bound, 1e-30) / math.sqrt(2 * V_NORM_TOL * hd * eps))))
        k = k_bound
        if observed is not None and observed[il] > 0:
            k_obs = math.ceil(0.5 * math.log2(observed[il] / (V_NORM_OBSERVED * eps)))
            k = max(0, min(k_bound, k_obs))
        out[p + "attn_v.weight"] = (out[p + "attn_v.weight"] * np.float32(2.0 ** -k)).astype(np.float32)
        out[p + "attn_output.weight"] = (out[p + "attn_output.weight"].astype(np.float64)
                                         * (math.sqrt(eps) * 2.0 ** k)).astype(np.float32)
        ks.append(k)
        kb.append(k_bound)
    info = {"log2_v_scale": [-k for k in ks], "log2_v_scale_guaranteed": [-k for k in kb],
            "tolerance_guaranteed": V_NORM_TOL, "eps": eps, "attn_v_kept_wide": True}
    if observed is not None:
        info["observed_mean_v2_over_eps"] = V_NORM_OBSERVED
        info["max_gain_error_on_calibration"] = max(
            o * 4.0 ** -k / eps / 2 for o, k in zip(observed, ks))
    return info

"""Which stock llama.cpp architecture computes a family's function, and how to write it.

llama.cpp reads `feed_forward_length` as a per-layer array for every architecture,
but the loaders of `llama`, `qwen2`, `gemma2` and `gemma3` build every layer's FFN
with layer 0's width. Per-layer widths therefore go to an architecture whose
loader uses `hparams.n_ff(il)` and whose graph computes the same function
(llama.cpp as vendored by llama-cpp-python 0.3.36, read from its source):

  Llama, Mistral, Qwen2 -> `deci`: Llama blocks (RMSNorm, SwiGLU, GQA, optional
      q/k/v/o biases), rope type NORM (pairs of adjacent dims), attention scale
      1/sqrt(head_dim), rope_freqs factors optional. HF stores q/k rows with the
      two rotary halves split, so their rows are interleaved back (as for `llama`).
      A layer written with width 0 would lose its attention output in deci's
      graph (it `continue`s before the residual add), so widths are kept >= 1.
  Gemma 3 -> `gemma4`: the same block (sandwich norms, q/k norms, GeGLU-tanh,
      sliding-window layers with their own rope base) with three differences that
      weight rewrites remove:
        * attention scale fixed at 1.0   -> q_norm weight x query_pre_attn_scalar^-1/2
        * a weightless RMS norm on V     -> attn_v scaled by 2^-k (kept in F32/BF16)
          so that mean(v^2) << eps and the norm is the fixed linear map v/sqrt(eps);
          attn_output is scaled by sqrt(eps)*2^k to undo it. k per layer from a
          bound on |v| and from V's peak on calibration text (see _linearise_v_norm).
        * final_logit_softcapping defaults to 30 -> written explicitly (0 = off)
      plus required keys (per-layer sliding pattern, SWA head sizes, per-layer
      embedding size 0) and a rope_freqs tensor (ones) on full-attention layers.
  Gemma 2 -> none: its attention-logit soft-capping exists only in `gemma2`,
      whose loader uses one width, so every layer is zero-padded to the widest
      (exact, but the padding is stored and computed: no savings).
Models whose layers all have one width keep their native architecture
(`Adapter.gguf_arch`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError
from ..models.adapters import ALIASES, adapter_for, ffn_layers

# gemma4's linearised V norm: gain error guaranteed for every input (bound), and the
# peak mean(v'^2)/eps aimed at on calibration text (see _linearise_v_norm).
V_NORM_TOL = 1e-4
V_NORM_OBSERVED = 1e-4
# Zero neurons written for a layer pruned to width 0 (one Q8_0/Q5_0 block).
MIN_STORED_WIDTH = 32


@dataclass(frozen=True)
class Target:
    arch: str                  # general.architecture written
    per_layer_ffn: bool        # loader builds layer i's FFN with hparams.n_ff(i)
    interleaved_rope: bool     # rope type NORM: q/k rows reordered from HF's split halves
    gemma: bool                # Gemma blocks: RMSNorm weight stored as 1 + w
    loads_rope_freqs: bool     # reads a rope_freqs tensor (rope scaling as per-frequency factors)


TARGETS: dict[str, Target] = {
    #                      per_layer_ffn  interleaved_rope  gemma  loads_rope_freqs
    "llama": Target("llama", False, True, False, True),
    "deci": Target("deci", True, True, False, True),
    "qwen2": Target("qwen2", False, False, False, False),
    "gemma2": Target("gemma2", False, False, True, False),
    "gemma3": Target("gemma3", False, False, True, False),
    "gemma4": Target("gemma4", True, False, True, True),
}

# config.model_type -> target architecture for per-layer widths (None: pad to the widest).
PER_LAYER_TARGET: dict[str, str | None] = {
    "llama": "deci",
    "mistral": "deci",
    "qwen2": "deci",
    "gemma2": None,
    "gemma3_text": "gemma4",
}
NO_PER_LAYER_REASON = {
    "gemma2": "no stock llama.cpp architecture computes Gemma 2 with per-layer FFN widths "
              "(attention-logit soft-capping exists only in 'gemma2', whose loader gives every "
              "layer one width)",
}


@dataclass
class Layout:
    """What will be written: architecture, true and stored FFN widths, and why."""
    model_type: str
    target: Target
    widths: list[int]                 # the model's FFN widths (the truth)
    stored: list[int]                 # widths written (>= widths; zero neurons fill the gap)
    reason: str
    notes: list[str] = field(default_factory=list)

    @property
    def padded(self) -> bool:
        return self.stored != self.widths

    def padding(self, hidden: int) -> dict | None:
        if not self.padded:
            return None
        extra = sum(s - w for s, w in zip(self.stored, self.widths))
        return {"zero_neurons": extra, "extra_parameters": 3 * hidden * extra,
                "stored_widths": self.stored}


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def choose_layout(model, align: int | None = None) -> Layout:
    """The architecture and stored widths for `model` (in memory, per-layer widths allowed)."""
    ad = adapter_for(model.config.model_type)          # refuses unsupported families
    model_type = ALIASES.get(model.config.model_type, model.config.model_type)
    widths = [v.width for v in ffn_layers(model)]
    stored = list(widths)
    notes: list[str] = []
    if align:
        stored = [_round_up(w, align) for w in stored]
        if stored != widths:
            notes.append(f"widths zero-padded up to multiples of {align} (exact)")
    if any(w == 0 for w in stored):
        stored = [w or MIN_STORED_WIDTH for w in stored]
        notes.append(f"layers pruned to width 0 are written with {MIN_STORED_WIDTH} zero neurons "
                     f"(exact; llama.cpp's deci graph drops a width-0 layer's attention output)")
    window = getattr(model.config, "sliding_window", None)
    if (not TARGETS[ad.gguf_arch].gemma and window and window < model.config.max_position_embeddings
            and getattr(model.config, "use_sliding_window", True)):
        notes.append(f"llama.cpp's llama/deci/qwen2 attend to the whole context: outputs match "
                     f"for contexts up to the model's sliding window ({window} tokens)")
    if len(set(stored)) == 1:
        return Layout(model_type, TARGETS[ad.gguf_arch], widths, stored,
                      f"every layer has width {stored[0]}: native '{ad.gguf_arch}'", notes)
    per_layer = PER_LAYER_TARGET.get(model_type)
    if per_layer is None:
        widest = max(stored)
        notes.append(f"PADDED: every layer zero-padded to the widest ({widest}); exact but the "
                     f"file and compute keep the full width — no savings from pruning")
        return Layout(model_type, TARGETS[ad.gguf_arch], widths, [widest] * len(stored),
                      NO_PER_LAYER_REASON.get(model_type, "no per-layer architecture"), notes)
    return Layout(model_type, TARGETS[per_layer], widths, stored,
                  f"per-layer FFN widths: '{per_layer}' reads them and computes the "
                  f"{ad.family} block exactly", notes)


# ----------------------------------------------------------------------------- config

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


# ----------------------------------------------------------------------------- hparams

def write_hparams(w, model, layout: Layout) -> None:
    """Architecture keys for `layout.target` into GGUFWriter `w` (whose arch is set)."""
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
        if t.arch == "gemma4":
            if not getattr(cfg, "sliding_window", None):
                w.add_sliding_window(int(cfg.max_position_embeddings))
                w.add_sliding_window_pattern(swa)
            w.add_key_length_swa(hd)
            w.add_value_length_swa(hd)
            w.add_embedding_length_per_layer_input(0)


# ----------------------------------------------------------------------------- tensors

def _interleave_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
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


def gguf_tensors(model, layout: Layout, calib_ids=None) -> tuple[dict[str, np.ndarray], dict]:
    """GGUF name -> float32 array for `layout.target`, with every rewrite applied.

    calib_ids: token-id sequences the gemma4 V rewrite may look at (see _linearise_v_norm).
    Returns (tensors, info) where info records the rewrites (for the summary).
    """
    import gguf

    cfg = model.config
    t = layout.target
    n = cfg.num_hidden_layers
    arch_enum = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == t.arch)
    names = gguf.get_tensor_name_map(arch_enum, n)
    out: dict[str, np.ndarray] = {}
    for hf_name, arr in hf_tensors(model).items():
        g = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if g is None:
            raise RuntimeError(f"no GGUF tensor name for '{hf_name}' in architecture '{t.arch}'")
        out[g] = arr
    info: dict = {}

    hd = head_dim(cfg)
    for il in range(n):
        p = f"blk.{il}."
        if t.gemma:
            for k in [k for k in out if k.startswith(p) and k.endswith("norm.weight")]:
                out[k] = out[k] + np.float32(1.0)
        if t.interleaved_rope:
            for kind, heads in (("attn_q", cfg.num_attention_heads), ("attn_k", cfg.num_key_value_heads)):
                for suf in (".weight", ".bias"):
                    if p + kind + suf in out:
                        out[p + kind + suf] = _interleave_rope_rows(out[p + kind + suf], heads)
        stored, width = layout.stored[il], layout.widths[il]
        if stored != width:
            pad = stored - width
            for kind in ("ffn_gate", "ffn_up"):
                for suf in (".weight", ".bias"):
                    k = p + kind + suf
                    if k in out:
                        a = out[k]
                        out[k] = np.concatenate([a, np.zeros((pad, *a.shape[1:]), a.dtype)], axis=0)
            k = p + "ffn_down.weight"
            out[k] = np.concatenate([out[k], np.zeros((out[k].shape[0], pad), out[k].dtype)], axis=1)
    if t.gemma:
        out["output_norm.weight"] = out["output_norm.weight"] + np.float32(1.0)
    # Rope scaling as per-frequency divisors; gemma4 requires the tensor (ones: no scaling)
    # and applies it on full-attention layers only, as Gemma 3 scales only its global rope.
    factors = rope_factors(cfg) if t.loads_rope_freqs else None
    if factors is not None:
        out["rope_freqs.weight"] = factors.astype(np.float32)
    elif t.arch == "gemma4":
        out["rope_freqs.weight"] = np.ones(hd // 2, dtype=np.float32)

    qpas = getattr(cfg, "query_pre_attn_scalar", None) or hd
    want = qpas ** -0.5
    if t.arch in ("gemma2", "gemma3"):
        c = want / _llama_attention_scale(cfg, t.arch, n)
        if abs(c - 1.0) > 1e-12:
            kind = "attn_q.weight" if t.arch == "gemma2" else "attn_q_norm.weight"
            for il in range(n):
                out[f"blk.{il}.{kind}"] = out[f"blk.{il}.{kind}"] * np.float32(c)
            info["query_scale_folded"] = {"tensor": kind, "factor": c}
    if t.arch == "gemma4":
        for il in range(n):
            out[f"blk.{il}.attn_q_norm.weight"] = out[f"blk.{il}.attn_q_norm.weight"] * np.float32(want)
        info["query_scale_folded"] = {"tensor": "attn_q_norm.weight", "factor": want}
        info["v_norm_linearised"] = _linearise_v_norm(out, cfg, n, hd,
                                                      observed_v_power(model, calib_ids))
    return out, info


def observed_v_power(model, calib_ids) -> list[float] | None:
    """Per layer: the largest mean(v^2) of one V head over the calibration tokens (None: no text).

    Gemma 3 attention modules name their V projection `self_attn.v_proj`.
    """
    import torch

    if not calib_ids:
        return None
    from ..models.adapters import _get, model_adapter

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


def _linearise_v_norm(out: dict[str, np.ndarray], cfg, n: int, hd: int,
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

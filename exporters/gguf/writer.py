"""Writing one GGUF with gguf-py: general and babel-edge metadata, hyper-parameters,
tokenizer, tensors (F32, or F16 for 2-D weights). Quantized files are made from the F32
one by llama.cpp's own quantizer (llama.py)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ... import __version__
from ...prune.plan import PruningPlan
from .layout import Layout
from .tensors import write_hparams


def general_metadata(w, lm, layout: Layout, plan: PruningPlan | None, info: dict) -> None:
    cfg = lm.model.config
    base = Path(str(getattr(cfg, "_name_or_path", "") or lm.path)).name or lm.path.name
    w.add_type("model")
    if plan:
        langs = plan.target_langs
        rate = plan.realized_rate
        w.add_name(f"{base} (FFN pruned for {', '.join(langs)})")
        w.add_description(
            f"{lm.family} with its FFN pruned by babel-edge {__version__} to "
            f"{sum(layout.widths)} of {sum(plan.widths_before)} neurons (rate {rate:.4f}) for "
            f"the languages {', '.join(langs)}; strategy {plan.strategy}, schedule {plan.schedule}.")
        w.add_array("babel_edge.pruning.target_langs", langs)
        w.add_float32("babel_edge.pruning.rate", float(rate))
        for key in ("strategy", "schedule", "granularity"):
            w.add_string(f"babel_edge.pruning.{key}", str(getattr(plan, key)))
        if plan.vocab_trimmed:            # vocabulary trimmed to the targets (babel_edge.vocab)
            vs = plan.vocab
            w.add_uint32("babel_edge.vocab.size_before", int(vs["vocab_before"]))
            w.add_uint32("babel_edge.vocab.kept", int(vs["kept"]))
            w.add_string("babel_edge.vocab.tokenizer_kind", str(vs.get("tokenizer_kind")))
    else:
        w.add_name(base)
    if any(lm.path.glob("*GEMMA*")) or "gemma" in lm.arch:
        w.add_license("gemma")
        w.add_license_link("https://ai.google.dev/gemma/terms")
    w.add_string("babel_edge.version", __version__)
    w.add_string("babel_edge.source_fingerprint", str(lm.fingerprint))
    w.add_array("babel_edge.ffn_widths", [int(x) for x in layout.widths])
    if layout.padded:
        w.add_array("babel_edge.ffn_widths_stored", [int(x) for x in layout.stored])
        w.add_string("babel_edge.padding", "; ".join(layout.notes))
    from ...models.adapters import adapter_for

    native = adapter_for(lm.arch).gguf_arch
    if layout.target.arch != native:      # written as another architecture: say which, and how
        w.add_string("babel_edge.source_architecture", native)
        w.add_string("babel_edge.rewrite", rewrite_note(layout, info))
    v = info.get("v_norm_linearised")
    if v:
        w.add_array("babel_edge.gemma4.log2_v_scale", [int(k) for k in v["log2_v_scale"]])
        w.add_float32("babel_edge.gemma4.v_norm_gain_error_bound", float(v["gain_error_bound"]))


def rewrite_note(layout: Layout, info: dict) -> str:
    """What a rewritten file computes, in one sentence (metadata and export summary)."""
    if layout.target.arch == "gemma4":
        v = info.get("v_norm_linearised") or {}
        return (f"Gemma 3 written as gemma4 for per-layer FFN widths: query scale folded into "
                f"attn_q_norm (exact); gemma4's weightless V norm made a fixed linear map by "
                f"scaling attn_v by 2^-k and attn_output back (per-token per-head gain error "
                f"<= {v.get('gain_error_bound', 0):g} for every input); final logit "
                f"soft-capping written as off (exact)")
    return (f"written as '{layout.target.arch}' ({layout.reason}); the same function "
            f"(rewrites: {', '.join(info) or 'none'})")


F16_MAX = 65504.0


def write_file(path: Path, lm, layout: Layout, tensors: dict[str, np.ndarray], vocab, plan, info,
           dtype: str) -> list[str]:
    """One GGUF with gguf-py: dtype 'f32', or 'f16' (2-D weights; norms, gemma4's attn_v and
    any tensor beyond F16's range stay F32). Returns the tensors kept F32 for their range."""
    import gguf

    w = gguf.GGUFWriter(str(path), layout.target.arch)
    general_metadata(w, lm, layout, plan, info)
    write_hparams(w, lm.model, layout)
    vocab.write(w)
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    overrides = layout.target.quant_overrides() if layout.target.quant_overrides else {}
    wide = [re.compile(pattern) for pattern in overrides]      # tensors that keep their range
    kept = []
    for name, arr in tensors.items():
        if dtype == "f16" and arr.ndim == 2 and not any(r.search(name) for r in wide):
            if float(np.abs(arr).max()) > F16_MAX:
                kept.append(name)              # would overflow: stays F32 (reported)
            else:
                arr = arr.astype(np.float16)
        w.add_tensor(name, np.ascontiguousarray(arr))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return kept



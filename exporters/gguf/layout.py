"""Which stock llama.cpp architecture computes a family's function: the one table.

llama.cpp reads `feed_forward_length` as a per-layer array for every architecture,
but the loaders of `llama`, `qwen2`, `gemma2` and `gemma3` build every layer's FFN
with layer 0's width. Per-layer widths therefore go to an architecture whose loader
uses `hparams.n_ff(il)` and whose graph computes the same function (llama.cpp as
vendored by llama-cpp-python 0.3.36, read from its source). Each such target has its
own module; this table says which one applies:

  every layer the same width   the family's own architecture (Adapter.gguf_arch)
  Llama, Mistral, Qwen2        `deci`    (deci.py: Llama blocks, per-layer widths)
  Gemma 3                      `gemma4`  (gemma4.py: exact rewrites of three graph differences)
  Gemma 2                      padded to the widest layer (padded.py: exact, no savings)

Models whose layers all have one width keep their native architecture.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ...models.adapters import ALIASES, adapter_for, ffn_layers
from . import deci, gemma4, padded
from .tensors import fold_query_scale


@dataclass(frozen=True)
class Target:
    arch: str                  # general.architecture written
    per_layer_ffn: bool        # loader builds layer i's FFN with hparams.n_ff(i)
    interleaved_rope: bool     # rope type NORM: q/k rows reordered from HF's split halves
    gemma: bool                # Gemma blocks: RMSNorm weight stored as 1 + w
    loads_rope_freqs: bool     # reads a rope_freqs tensor (rope scaling as per-frequency factors)
    rewrite: Callable | None = None          # (tensors, cfg, layout, layers, global, observed) -> info
    measure: Callable | None = None          # (model, calib_ids) -> what the rewrite reports on
    extra_hparams: Callable | None = None    # (writer, model, layout) -> None
    quant_overrides: Callable | None = None  # () -> {tensor regex: ggml type} for the quantizer


TARGETS: dict[str, Target] = {
    #        arch       per_layer_ffn interleaved_rope gemma loads_rope_freqs
    "llama": Target("llama", False, True, False, True),
    "deci": Target("deci", True, True, False, True),
    "qwen2": Target("qwen2", False, False, False, False),
    "gemma2": Target("gemma2", False, False, True, False, rewrite=fold_query_scale),
    "gemma3": Target("gemma3", False, False, True, False, rewrite=fold_query_scale),
    "gemma4": Target("gemma4", True, False, True, True, rewrite=gemma4.rewrite,
                     measure=gemma4.observed_v_power, extra_hparams=gemma4.write_hparams,
                     quant_overrides=gemma4.quant_overrides),
}

# config.model_type -> target architecture for per-layer widths (None: pad to the widest).
PER_LAYER_TARGET: dict[str, str | None] = {
    "llama": "deci",
    "mistral": "deci",
    "qwen2": "deci",
    "gemma2": None,
    "gemma3_text": "gemma4",
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


def choose_layout(model, align: int | None = None) -> Layout:
    """The architecture and stored widths for `model` (in memory, per-layer widths allowed)."""
    return layout_for(model.config, [v.width for v in ffn_layers(model)], align)


def layout_for(config, widths: list[int], align: int | None = None) -> Layout:
    """The architecture and stored widths for a model of `config` whose FFN layers have
    `widths` (what the streamed export knows without building the model)."""
    ad = adapter_for(config.model_type)                # refuses unsupported families
    model_type = ALIASES.get(config.model_type, config.model_type)
    widths = list(widths)
    notes: list[str] = []
    stored = padded.aligned(widths, align)
    if stored != widths:
        notes.append(f"widths zero-padded up to multiples of {align} (exact)")
    stored, note = deci.stored_widths(stored)
    if note:
        notes.append(note)
    window = getattr(config, "sliding_window", None)
    if (not TARGETS[ad.gguf_arch].gemma and window and window < config.max_position_embeddings
            and getattr(config, "use_sliding_window", True)):
        notes.append(f"llama.cpp's llama/deci/qwen2 attend to the whole context: outputs match "
                     f"for contexts up to the model's sliding window ({window} tokens)")
    if len(set(stored)) == 1:
        return Layout(model_type, TARGETS[ad.gguf_arch], widths, stored,
                      f"every layer has width {stored[0]}: native '{ad.gguf_arch}'", notes)
    per_layer = PER_LAYER_TARGET.get(model_type)
    if per_layer is None:
        widest = padded.to_widest(stored)
        notes.append(f"PADDED: every layer zero-padded to the widest ({widest[0]}); exact but the "
                     f"file and compute keep the full width — no savings from pruning")
        return Layout(model_type, TARGETS[ad.gguf_arch], widths, widest,
                      padded.NO_PER_LAYER_REASON.get(model_type, "no per-layer architecture"), notes)
    return Layout(model_type, TARGETS[per_layer], widths, stored,
                  f"per-layer FFN widths: '{per_layer}' reads them and computes the "
                  f"{ad.family} block exactly", notes)

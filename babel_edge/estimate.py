"""What a pruning run will give, before anything is built: parameters, file sizes, and
per-language previews of existing profiles. Front ends (the TUI's budget screen)
call these on every keystroke, so this module imports nothing heavy at import time
(no torch, no numpy); the few functions that read tensors import them lazily and are
meant to run in a worker.

    shape = model_shape(model_dir)                        # config.json + safetensors headers
    est   = plan_estimate(shape, rate=0.5, schedule="uniform", formats={"gguf": "q8_0"})
    prev  = language_previews(fingerprint)                # profiles of this model in the cache

Parameters after pruning are exact for any schedule: both schedules meet the same
global budget of kept neurons (prune_schedule.budget), every FFN neuron holds
3 * hidden parameters (its gate row, up row and down column), and the rest of the
model is untouched. The per-layer split is exact for `uniform`; for `adaptive` it
needs the target languages' expert frequencies (a profile), so without one only the
total is given. File sizes are rough: parameters times an average number of bits
per weight for the precision (babel_edge.precision), which is what the format stores
per weight on average including block scales.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from . import precision as P
from .errors import UserError
from .io import safetensors_metadata, safetensors_params
from .prune import schedule as prune_schedule
from .prune.options import PruneOptions

DEFAULT_MULTIPLE_OF = PruneOptions().multiple_of     # prune()'s default rounding of layer widths
DEFAULT_EXPERT_SIZE = 32       # used only when no profile tells the expert size


@dataclass(frozen=True)
class ModelShape:
    """The sizes the estimate needs, read from a model directory without loading weights."""
    name: str
    hidden: int
    ffn_widths: tuple[int, ...]    # per layer
    vocab: int
    params: int                    # every stored parameter (safetensors headers)
    tied: bool = True              # the output head shares the embedding's rows

    @property
    def ffn_params(self) -> int:
        return 3 * self.hidden * sum(self.ffn_widths)


def model_shape(model_dir: str | Path) -> ModelShape:
    """Read config.json (per-layer `ffn_widths` of a pruned directory, or `intermediate_size`)
    and the safetensors headers of a Hugging Face model directory."""
    d = Path(model_dir)
    try:
        cfg = json.loads((d / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read {d / 'config.json'}: {e}") from e
    cfg = cfg.get("text_config", cfg) if "hidden_size" not in cfg else cfg
    n = int(cfg["num_hidden_layers"])
    ffn = cfg.get("ffn_widths") or cfg.get("intermediate_size")
    widths = tuple(int(w) for w in ffn) if isinstance(ffn, list) else (int(ffn),) * n
    return ModelShape(name=d.name, hidden=int(cfg["hidden_size"]), ffn_widths=widths,
                      vocab=int(cfg.get("vocab_size") or 0), params=safetensors_params(d),
                      tied=bool(cfg.get("tie_word_embeddings", True)))


@dataclass(frozen=True)
class Estimate:
    rate: float
    schedule: str
    granularity: str
    unit: int                              # widths are multiples of this
    kept_neurons: int                      # the global budget B
    widths_before: tuple[int, ...]
    widths: tuple[int, ...] | None         # None: adaptive without a profile (total is still exact)
    params_before: int
    params_after: int
    ffn_before: int
    ffn_after: int
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)   # "gguf q8_0" -> (dense, pruned) bytes
    vocab_before: int = 0
    vocab_after: int | None = None         # kept tokens when the vocabulary is trimmed to a size

    @property
    def realized_rate(self) -> float:
        return 1 - self.kept_neurons / sum(self.widths_before)


def file_bytes(params: int, fmt: str, precision: str) -> int:
    return P.file_bytes(params, fmt, precision)


def plan_estimate(shape: ModelShape, rate: float, schedule: str = "adaptive",
                  granularity: str = "neuron", signal: Sequence[float] | None = None,
                  expert_size: int = DEFAULT_EXPERT_SIZE, multiple_of: int = DEFAULT_MULTIPLE_OF,
                  min_keep: float = 0.1, formats: Mapping[str, str | None] | None = None,
                  vocab_size: int | None = None) -> Estimate:
    """Parameters and sizes after pruning `shape` at `rate` (UserError when the plan is impossible).

    `signal`: the adaptive schedule's g_l per layer (see adaptive_signal); without it the
    adaptive per-layer widths are left out, the totals stay exact (the `search` schedule's
    widths are found at build time: totals only). `vocab_size`: the vocabulary trimmed to
    that many tokens (embedding, and an untied head, shrink by the dropped rows); rate 0 is
    then allowed (no FFN pruning).
    """
    from .prune.options import SCHEDULES

    if schedule not in SCHEDULES:
        raise UserError(f"unknown schedule '{schedule}'; choose one of {', '.join(SCHEDULES)}")
    unit = prune_schedule.unit_for(granularity, multiple_of, expert_size)
    full = list(shape.ffn_widths)
    use_signal = signal if schedule == "adaptive" else None
    if rate == 0 and vocab_size is not None:
        widths = list(full)
    else:      # layer_widths checks the rate, the units and the floors exactly as prune's plan does
        widths = prune_schedule.layer_widths(full, rate, use_signal, unit, min_keep)
    kept = sum(widths)
    ffn_after = 3 * shape.hidden * kept
    after = shape.params - shape.ffn_params + ffn_after
    if vocab_size is not None:
        if not 0 < vocab_size:
            raise UserError(f"the kept vocabulary must be positive, not {vocab_size}")
        dropped = max(0, shape.vocab - vocab_size)
        after -= dropped * shape.hidden * (1 if shape.tied else 2)
    sizes = {}
    for fmt, prec in (formats or {}).items():
        if prec:
            sizes[f"{fmt} {prec}"] = (file_bytes(shape.params, fmt, prec), file_bytes(after, fmt, prec))
    exact_widths = schedule == "uniform" or (schedule == "adaptive" and signal is not None) \
        or rate == 0
    return Estimate(rate=rate, schedule=schedule, granularity=granularity, unit=unit,
                    kept_neurons=kept, widths_before=tuple(full),
                    widths=tuple(widths) if exact_widths else None,
                    params_before=shape.params, params_after=after,
                    ffn_before=shape.ffn_params, ffn_after=ffn_after, sizes=sizes,
                    vocab_before=shape.vocab,
                    vocab_after=min(vocab_size, shape.vocab) if vocab_size else None)


# ------------------------------------------------------------------ profiles of a model

def find_profiles(fingerprint: str, root: str | Path | None = None) -> list[Path]:
    """Profiles measured on the model with this fingerprint, newest first: those in the
    build's cache (`<cache>/profiles`, where `babel-edge build` keeps them) unless `root`."""
    from .models import cache_dir              # imports torch: call from a worker
    from .profile.data import FORMAT, HEADER_KEY

    if root is None:
        root = cache_dir() / "profiles"
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.glob("*.safetensors"):
        h = safetensors_metadata(p, HEADER_KEY)
        if h and h.get("format") == FORMAT and \
                (h.get("model") or {}).get("fingerprint") == fingerprint:
            found.append(p)
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name), reverse=True)


@dataclass
class LanguagePreview:
    code: str
    tokens: int                      # counted profile tokens
    layer_share: list[float]         # per layer: g_l, the effective share of experts it uses
    specific: int | None             # experts specific to it among the previewed languages
    profile: str                     # the profile file it comes from


@dataclass
class Previews:
    """Per-language views of the profiles a model already has (one expert map)."""
    langs: dict[str, LanguagePreview]
    expert_size: int
    _freq: dict = field(default_factory=dict, repr=False)        # code -> [Layer, E] numpy
    _sim: dict = field(default_factory=dict, repr=False)         # (a, b) -> cosine similarity

    def signal(self, langs: Sequence[str]) -> list[float] | None:
        """The adaptive schedule's g_l for these target languages (prune.adaptive_signal:
        expert frequencies averaged over the targets, each weighted equally), or None when
        a target has no profile yet."""
        if not langs or any(l not in self._freq for l in langs):
            return None
        mean = sum(self._freq[l] for l in langs) / len(langs)
        return [prune_schedule.effective_share(row.tolist()) for row in mean]

    def similarity(self, a: str, b: str) -> float | None:
        return self._sim.get((a, b))

    def nearest(self, lang: str, chosen: Sequence[str]) -> tuple[str, float] | None:
        """The chosen language most similar to `lang` (None without similarities)."""
        sims = [(c, self._sim[(lang, c)]) for c in chosen if c != lang and (lang, c) in self._sim]
        return max(sims, key=lambda t: t[1]) if sims else None


def language_previews(fingerprint: str, root: str | Path | None = None) -> Previews:
    """Previews of every language profiled on this model (newest profile wins per language;
    only profiles sharing the newest one's expert map, so frequencies are comparable).
    Similarity (report.analysis.similarity: centred cosine of expert frequencies) needs at
    least 3 languages; specific-expert counts (report.analysis) at least 2."""
    import numpy as np

    from .profile.store import load_profile
    from .report.analysis import expert_tables, similarity, thresholds_for

    paths = find_profiles(fingerprint, root)
    freq: dict[str, np.ndarray] = {}
    tokens: dict[str, int] = {}
    origin: dict[str, str] = {}
    digest, expert_size, share = None, DEFAULT_EXPERT_SIZE, 0.25
    for p in paths:
        prof = load_profile(p, model_fingerprint=fingerprint)
        d = prof.header["experts"].get("digest")
        if digest is None:
            digest, expert_size = d, prof.expert_map.expert_size
            share = prof.header["activation"].get("top_k_share", share)
        elif d != digest:
            continue
        grid = prof.freq_grid().numpy()                     # [Lang, Layer, E]
        for i, code in enumerate(prof.langs):
            if code not in freq:
                freq[code], tokens[code], origin[code] = grid[i], int(prof.tokens[i]), str(p)
    codes = sorted(freq)
    specific: dict[str, int] = {}
    sim: dict[tuple[str, str], float] = {}
    if len(codes) >= 2:
        stack = np.stack([freq[c] for c in codes])
        specific = expert_tables(stack, codes, thresholds_for(share))["specific_per_language"]
        if len(codes) >= 3:
            m = similarity(stack.reshape(len(codes), -1))
            sim = {(a, b): float(m[i, j]) for i, a in enumerate(codes) for j, b in enumerate(codes)}
    langs = {c: LanguagePreview(code=c, tokens=tokens[c],
                                layer_share=[prune_schedule.effective_share(r.tolist()) for r in freq[c]],
                                specific=specific.get(c), profile=origin[c]) for c in codes}
    return Previews(langs=langs, expert_size=expert_size, _freq=freq, _sim=sim)


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], lo: float | None = None, hi: float | None = None) -> str:
    """One character per value, ▁ (lowest) to █ (highest), over [lo, hi] (default: the values' range)."""
    if not values:
        return ""
    lo = min(values) if lo is None else lo
    hi = max(values) if hi is None else hi
    span = hi - lo
    return "".join(SPARKS[0 if span <= 0 else min(len(SPARKS) - 1,
                                                  max(0, int((v - lo) / span * len(SPARKS))))]
                   for v in values)

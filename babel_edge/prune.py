"""Prune a model's FFN to what a set of target languages uses.

    profile (per-language neuron/expert stats) ─┐
    calibration (target text, profile split) ───┼─► plan: per-layer widths + kept neuron ids
    model weights ──────────────────────────────┘        └─► physical removal (+ compensation)
                                                                 └─► pruned directory (prune_io)

Strategies — how neurons of one layer are ranked (higher = kept first):
  frequency   how often a neuron fires on the target languages (profile `neuron_freq`,
              fires = |a| above the token's mean |a| in its layer); at expert
              granularity, how often the expert is among its layer's top-k by mass
              (profile `expert_freq`). The paper's criterion.
  mass        mean |a| on the target languages x the L2 norm of the neuron's
              down-projection column: how much it changes the output, not only how
              often it fires. Experts: the sum over their neurons.
  magnitude   language-blind weight importance (Wanda/Minitron-like without data):
              ||gate row|| * ||up row|| * ||down column||; for a gated FFN this
              bounds the neuron's output for a unit input. Experts: the sum.
  random      a seeded random ranking (the floor every claim is measured against).
Target languages are weighted equally: every per-language statistic is averaged
over the target languages, whatever their token counts.

Massive-activation neurons (see prune_calib.MASSIVE_RATIO) are kept by every
strategy except `random`: a neuron is protected when its mean |a| is at least
20x its layer's median neuron (1) on the target languages (profile, averaged
over them), (2) for the typical profiled language (the median over all the
profile's languages: the bias-like neurons every language relies on), or (3) on
the target-language calibration text, which, unlike the profile, includes the
BOS position where outliers concentrate. At expert granularity the experts that
hold them are kept first.

Schedules (prune_schedule): `adaptive` sets a per-layer width from how widely
the target languages spread their expert activations over the layer; `uniform`
removes the same share everywhere. Both meet the global budget exactly.

Vocabulary trimming (babel_edge.vocab, `prune(..., trim_vocab=True)`): after the FFN,
the embedding (and an untied head) keeps only the rows of the tokens the target
languages need, and the tokenizer is rebuilt over them; the plan's "vocab" section
says what was kept and how the eval split tokenizes.

Compensation (prune_calib.compensate, on by default): after K is chosen, the kept
down-projection columns are refit by least squares on calibration activations
of the target languages, so each layer's FFN output is preserved as well as K
allows. No inference cost.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from . import __version__
from . import prune_calib, prune_schedule
from .errors import UserError
from .models.adapters import ffn_layers
from .prune_io import ffn_params, ffn_widths, load_pruned, read_plan, save_pruned, shrink_layer
from .vocab import read_user_text, trim_loaded

__all__ = ["STRATEGIES", "SCHEDULES", "GRANULARITIES", "TargetStats", "PrunePlan", "target_stats",
           "plan_pruning", "apply_plan", "prune_loaded", "prune", "load_pruned", "read_plan"]

STRATEGIES = ("mass", "frequency", "magnitude", "random")
LANGUAGE_STRATEGIES = ("mass", "frequency")
SCHEDULES = ("adaptive", "uniform")
GRANULARITIES = ("neuron", "expert")
PLAN_FORMAT = "babel-edge-pruning-plan"
PLAN_VERSION = 1
DEFAULT_OTHER_LANGS = ("ru", "zh", "ar")     # non-target languages a vocabulary report covers


# ------------------------------------------------------------------ what the profile says

@dataclass
class TargetStats:
    """The profile reduced to the target languages (each weighted equally), per layer."""
    langs: list[str]
    neuron_freq: list[torch.Tensor]       # [F] share of tokens the neuron fires on
    neuron_mass: list[torch.Tensor]       # [F] mean |a| per token
    expert_freq: list[torch.Tensor]       # [E] share of tokens the expert is active on
    experts: list[torch.Tensor]           # [E, S] neuron ids of each expert
    massive: list[torch.Tensor]           # sorted ids of massive neurons (see module doc)
    expert_size: int


def target_stats(profile, langs: Sequence[str]) -> TargetStats:
    """Average the profile over `langs` (UserError for a language the profile lacks)."""
    for code in langs:
        profile.lang_index(code)
    sel = profile.select(list(langs))
    L = profile.n_layers
    massive = []
    for i in range(L):
        # massive on the targets (their mean), or for the typical profiled language (the
        # median over all of them: the bias-like neurons every language relies on)
        ids = [prune_calib.massive_neurons(sel.neuron_mean_mass(i).mean(0)),
               prune_calib.massive_neurons(profile.neuron_mean_mass(i).median(0).values)]
        massive.append(torch.unique(torch.cat(ids)))
    return TargetStats(
        langs=list(langs),
        neuron_freq=[sel.neuron_freq(i).mean(0).float() for i in range(L)],
        neuron_mass=[sel.neuron_mean_mass(i).mean(0).float() for i in range(L)],
        expert_freq=[sel.expert_freq(i).mean(0).float() for i in range(L)],
        experts=[e.clone() for e in profile.expert_map.experts],
        massive=massive,
        expert_size=profile.expert_map.expert_size)


# ------------------------------------------------------------------ ranking

def neuron_importance(strategy: str, model, stats: TargetStats | None, seed: int = 0) -> list[torch.Tensor]:
    """Per layer [F] float scores, higher = more important."""
    views = ffn_layers(model)
    if strategy in LANGUAGE_STRATEGIES and stats is None:
        raise UserError(f"the '{strategy}' strategy reads the target languages' profile; give "
                        f"--profile (made with 'babel-edge profile')")
    out = []
    g = torch.Generator().manual_seed(seed)
    for v in views:
        with torch.no_grad():
            down_norm = v.down.weight.float().norm(dim=0)                      # [F]
            if strategy == "frequency":
                s = stats.neuron_freq[v.index].clone()
            elif strategy == "mass":
                s = stats.neuron_mass[v.index] * down_norm
            elif strategy == "magnitude":
                s = v.gate.weight.float().norm(dim=1) * v.up.weight.float().norm(dim=1) * down_norm
            elif strategy == "random":
                s = torch.rand(v.width, generator=g)
            else:
                raise UserError(f"unknown strategy '{strategy}'; choose one of {', '.join(STRATEGIES)}")
        out.append(s.float())
    return out


def _top(scores: torch.Tensor, k: int, first: torch.Tensor | None = None) -> torch.Tensor:
    """Ids of the k highest scores (ties: lower id), with ids in `first` taken before all others."""
    order = torch.sort(-scores.double(), stable=True).indices          # by score, ties by id
    if first is not None and first.numel():
        flag = torch.zeros(scores.numel(), dtype=torch.long)
        flag[first] = 1
        order = order[torch.sort(-flag[order], stable=True).indices]    # protected first
    return order[:k]


def choose_neurons(scores: torch.Tensor, width: int, protect: torch.Tensor | None) -> torch.Tensor:
    return torch.sort(_top(scores, width, protect)).values


def choose_experts(expert_scores: torch.Tensor, experts: torch.Tensor, width: int,
                   protect: torch.Tensor | None) -> torch.Tensor:
    """Whole experts, highest score first (experts holding protected neurons before all)."""
    size = experts.shape[1]
    first = None
    if protect is not None and protect.numel():
        first = torch.isin(experts, protect).any(dim=1).nonzero().squeeze(1)
    picked = _top(expert_scores, width // size, first)
    return torch.sort(experts[picked].reshape(-1)).values


# ------------------------------------------------------------------ the plan

@dataclass
class PrunePlan:
    langs: list[str]
    rate: float
    strategy: str
    schedule: str
    granularity: str
    unit: int
    min_keep: float
    alpha: float
    seed: int
    widths_before: list[int]
    widths: list[int]
    signal: list[float] | None             # g_l of the adaptive formula (None: uniform)
    kept: list[torch.Tensor] = field(repr=False)     # per layer, sorted neuron ids
    massive: list[torch.Tensor] = field(repr=False)  # per layer, protected ids (empty for random)

    @property
    def layer_rates(self) -> list[float]:
        return [1 - w / f for w, f in zip(self.widths, self.widths_before)]

    @property
    def realized_rate(self) -> float:
        return 1 - sum(self.widths) / sum(self.widths_before)

    def to_dict(self) -> dict:
        formula = (prune_schedule.ADAPTIVE_FORMULA if self.schedule == "adaptive"
                   else prune_schedule.UNIFORM_FORMULA)
        return {
            "target_langs": self.langs, "rate": self.rate,
            "realized_rate": round(self.realized_rate, 6), "strategy": self.strategy,
            "schedule": self.schedule, "granularity": self.granularity, "multiple_of": self.unit,
            "min_keep": self.min_keep, "alpha": self.alpha, "seed": self.seed,
            "schedule_formula": formula,
            "budget_neurons": sum(self.widths),
            "massive_rule": (None if self.strategy == "random" else
                             f"mean |a| >= {prune_calib.MASSIVE_RATIO:g} x the layer's median "
                             f"neuron: on the targets (profile mean), for the median profiled language, or on "
                             f"the target calibration text (BOS included)"),
            "layers": [{"layer": i, "width_before": f, "width": w, "rate": round(1 - w / f, 6),
                        "signal": None if self.signal is None else round(self.signal[i], 6),
                        "massive": self.massive[i].tolist(), "kept": self.kept[i].tolist()}
                       for i, (f, w) in enumerate(zip(self.widths_before, self.widths))],
        }


def _unit(granularity: str, multiple_of: int, stats: TargetStats | None) -> int:
    if granularity == "neuron":
        return multiple_of
    if granularity != "expert":
        raise UserError(f"unknown granularity '{granularity}'; choose neuron or expert")
    if stats is None:
        raise UserError("expert granularity needs the profile's expert map; give --profile")
    return math.lcm(multiple_of, stats.expert_size)


def adaptive_signal(stats: TargetStats) -> list[float]:
    """g_l: the effective share of experts the target languages use in each layer."""
    return [prune_schedule.effective_share(f.tolist()) for f in stats.expert_freq]


def plan_pruning(model, langs: Sequence[str], rate: float, *, stats: TargetStats | None = None,
                 calibration: prune_calib.Calibration | None = None, strategy: str = "mass",
                 schedule: str = "adaptive", granularity: str = "neuron", multiple_of: int = 32,
                 min_keep: float = 0.1, alpha: float = 1.0, seed: int = 0) -> PrunePlan:
    """Decide every layer's width and kept neurons (the model is not changed)."""
    prune_schedule.check_rate(rate)
    if strategy not in STRATEGIES:
        raise UserError(f"unknown strategy '{strategy}'; choose one of {', '.join(STRATEGIES)}")
    if schedule not in SCHEDULES:
        raise UserError(f"unknown schedule '{schedule}'; choose adaptive or uniform")
    if not 0 <= min_keep < 1:
        raise UserError(f"--min-keep is a share of each layer's width in [0, 1), not {min_keep}")
    full = ffn_widths(model)
    unit = _unit(granularity, multiple_of, stats)
    if stats is not None and [int(e.numel()) for e in stats.experts] != full:
        raise UserError("the profile's expert map does not match this model's FFN widths; "
                        "profile this model with 'babel-edge profile'")
    signal = None
    if schedule == "adaptive":
        if stats is None:
            raise UserError("the adaptive schedule reads the target languages' profile; give "
                            "--profile or use --schedule uniform")
        signal = adaptive_signal(stats)
    widths = prune_schedule.layer_widths(full, rate, signal, unit, min_keep, alpha)
    scores = neuron_importance(strategy, model, stats, seed)
    kept, massive = [], []
    for i, w in enumerate(widths):
        protect = torch.zeros(0, dtype=torch.long)
        if strategy != "random":
            found = [] if stats is None else [stats.massive[i]]
            if calibration is not None:
                found.append(prune_calib.massive_neurons(calibration.mean_abs[i]))
            if found:
                protect = torch.unique(torch.cat(found))
        massive.append(protect)
        if granularity == "expert":
            ex = stats.experts[i]
            if strategy == "frequency":
                es = stats.expert_freq[i]
            elif strategy == "random":
                es = torch.rand(ex.shape[0], generator=torch.Generator().manual_seed(seed * 7919 + i))
            else:
                es = scores[i][ex].sum(1)
            kept.append(choose_experts(es, ex, w, protect))
        else:
            kept.append(choose_neurons(scores[i], w, protect))
    return PrunePlan(list(langs), rate, strategy, schedule, granularity, unit, min_keep,
                     alpha if schedule == "adaptive" else 0.0, seed, full, widths, signal, kept, massive)


def apply_plan(model, plan: PrunePlan, calibration: prune_calib.Calibration | None = None,
               ridge: float = prune_calib.RIDGE) -> None:
    """Cut every layer to its kept neurons, in place; refit down columns when `calibration` is given."""
    views = ffn_layers(model)
    if [v.width for v in views] != plan.widths_before:
        raise ValueError("the plan was made for a model with other FFN widths")
    for v in views:
        k = plan.kept[v.index]
        down = None
        if calibration is not None:
            down = prune_calib.compensate(v.down.weight, calibration.second[v.index], k, ridge)
        shrink_layer(model, v.index, k, down)


# ------------------------------------------------------------------ end to end

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def prune_loaded(lm, langs: Sequence[str], rate: float, *, profile=None, texts_for=None,
                 strategy: str = "mass", schedule: str = "adaptive", granularity: str = "neuron",
                 compensate: bool = True, multiple_of: int = 32, min_keep: float = 0.1,
                 alpha: float = 1.0, seed: int = 0, calib_tokens: int = 16384,
                 ridge: float = prune_calib.RIDGE, calibration=None, copy: bool = True):
    """Prune a LoadedModel-like `lm` (model, tokenizer, fingerprint, ...).

    texts_for(lang) gives the calibration text (the profile split). Returns
    (model, plan_dict); with copy=True the loaded model is left untouched.
    """
    import copy as _copy

    langs = list(dict.fromkeys(langs))
    if not langs:
        raise UserError("no target languages; give --langs (e.g. --langs en,de,fr)")
    prune_schedule.check_rate(rate)
    if profile is not None and profile.fingerprint != lm.fingerprint:
        raise UserError(f"the profile was measured on another model (fingerprint "
                        f"{profile.fingerprint}), not this one ({lm.fingerprint}); profile this "
                        f"model with 'babel-edge profile'")
    stats = target_stats(profile, langs) if profile is not None else None
    need_cal = compensate or strategy != "random"
    if calibration is None and need_cal and texts_for is not None:
        calibration = prune_calib.calibrate(lm.model, lm.tokenizer, lm.fingerprint, texts_for,
                                            langs, calib_tokens)
    if compensate and calibration is None:
        raise UserError("compensation needs calibration text of the target languages; give a "
                        "corpus or use --no-compensate")
    plan = plan_pruning(lm.model, langs, rate, stats=stats, calibration=calibration,
                        strategy=strategy, schedule=schedule, granularity=granularity,
                        multiple_of=multiple_of, min_keep=min_keep, alpha=alpha, seed=seed)
    model = _copy.deepcopy(lm.model) if copy else lm.model
    total_before, ffn_before = sum(p.numel() for p in model.parameters()), ffn_params(model)
    apply_plan(model, plan, calibration if compensate else None, ridge)
    d = {"format": PLAN_FORMAT, "format_version": PLAN_VERSION, **plan.to_dict()}
    d["compensation"] = ({"on": True, "ridge": ridge, "formula":
                          "W_K = W C[:, K] (C[K, K] + lam I)^-1, C = E[a a^T] over calibration "
                          "tokens, lam = ridge * mean(diag C[K, K])"} if compensate else {"on": False})
    d["calibration"] = None if calibration is None else {
        **calibration.meta(), "split": "profile", "note": "first paragraphs of each target "
        "language's profile split, equal tokens per language, BOS positions included"}
    d["params"] = {"ffn_before": ffn_before, "ffn_after": ffn_params(model),
                   "total_before": total_before, "total_after": sum(p.numel() for p in model.parameters())}
    prof_path = getattr(profile, "path", None)
    d["provenance"] = {
        "source_model": str(getattr(lm, "spec", "")), "source_path": str(getattr(lm, "path", "")),
        "source_fingerprint": lm.fingerprint,
        "profile": None if profile is None else {
            "path": str(prof_path) if prof_path else None,
            "sha256": _sha256(Path(prof_path)) if prof_path and Path(prof_path).is_file() else None,
            "fingerprint": profile.fingerprint, "experts": profile.header.get("experts", {}).get("digest")},
        "babel_edge_version": __version__, "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return model, d


def prune(model: str | None, profile: str | Path | None, langs: Sequence[str], rate: float,
          out: str | Path, *, corpus: str | None = None, trim_vocab: bool = False,
          vocab_text: Sequence[str | Path] | str | Path | None = None,
          other_langs: Sequence[str] = DEFAULT_OTHER_LANGS, **kw) -> tuple[Path, dict]:
    """Load, prune, save: what `babel-edge prune` does. Returns (directory, plan dict).

    trim_vocab: also trim the vocabulary to the target languages (babel_edge.vocab): the
    tokens their profile-split text and the `vocab_text` files need; the plan gets a
    "vocab" section (kept count, reasons, eval-split coverage for the targets and
    `other_langs`, the kept old ids)."""
    from .corpus import load_corpus, load_user_corpus
    from .models import load_model
    from .profile import load_profile

    prune_schedule.check_rate(rate)
    user_text = read_user_text(vocab_text)       # bad files fail before the model loads
    if user_text and not trim_vocab:
        raise UserError("--vocab-text chooses the tokens --trim-vocab keeps; add --trim-vocab")
    lm = load_model(model)
    prof = load_profile(profile, model_fingerprint=lm.fingerprint) if profile else None
    corp = load_user_corpus(corpus) if corpus else load_corpus()
    for code in langs:
        if prof is not None:
            prof.lang_index(code)
        corp.texts(code, "profile")              # fail early on a language the corpus lacks
    pruned, plan = prune_loaded(lm, langs, rate, profile=prof,
                                texts_for=lambda l: corp.texts(l, "profile"), copy=False, **kw)
    trimmed = None
    if trim_vocab:
        trimmed = trim_loaded(pruned, lm.tokenizer, langs, lambda l: corp.texts(l, "profile"),
                              user_texts=user_text, model_dir=lm.path,
                              eval_for=lambda l: corp.texts(l, "eval"),
                              other_langs=[l for l in other_langs if l in corp])
        plan["vocab"] = trimmed.section
        plan["params"]["total_after"] = sum(p.numel() for p in pruned.parameters())
    path = save_pruned(pruned, out, plan, source_dir=lm.path, tokenizer=lm.tokenizer, vocab=trimmed)
    return path, plan

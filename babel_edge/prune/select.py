"""Which neurons stay: the profile reduced to the target languages, neuron importance by
strategy, and the plan (every layer's width and kept ids). The model is not changed here.

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

Massive-activation neurons (calibration.MASSIVE_RATIO) are kept by every strategy
except `random`: a neuron is protected when its mean |a| is at least 20x its layer's
median neuron (1) on the target languages (profile, averaged over them), (2) for the
typical profiled language (the median over all the profile's languages: the bias-like
neurons every language relies on), or (3) on the target-language calibration text,
which, unlike the profile, includes the BOS position where outliers concentrate. At
expert granularity the experts that hold them are kept first.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import UserError
from ..models.adapters import ffn_layers
from . import calibration as calib
from . import schedule as sched
from .options import LANGUAGE_STRATEGIES, PruneOptions, check_rate
from .plan import LayerPlan, PruningPlan


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
        ids = [calib.massive_neurons(sel.neuron_mean_mass(i).mean(0)),
               calib.massive_neurons(profile.neuron_mean_mass(i).median(0).values)]
        massive.append(torch.unique(torch.cat(ids)))
    return TargetStats(
        langs=list(langs),
        neuron_freq=[sel.neuron_freq(i).mean(0).float() for i in range(L)],
        neuron_mass=[sel.neuron_mean_mass(i).mean(0).float() for i in range(L)],
        expert_freq=[sel.expert_freq(i).mean(0).float() for i in range(L)],
        experts=[e.clone() for e in profile.expert_map.experts],
        massive=massive,
        expert_size=profile.expert_map.expert_size)


def protected_neurons(strategy: str, stats: "TargetStats | None", calibration, layer: int) -> torch.Tensor:
    """Neuron ids of `layer` that no strategy but `random` may remove: the massive-activation
    neurons the profile found, and those the calibration text shows."""
    if strategy == "random":
        return torch.zeros(0, dtype=torch.long)
    found = [] if stats is None else [stats.massive[layer]]
    if calibration is not None:
        found.append(calib.massive_neurons(calibration.mean_abs[layer]))
    return torch.unique(torch.cat(found)) if found else torch.zeros(0, dtype=torch.long)


def neuron_importance(strategy: str, model, stats: TargetStats | None, seed: int = 0) -> list[torch.Tensor]:
    """Per layer [F] float scores, higher = more important."""
    if strategy in LANGUAGE_STRATEGIES and stats is None:
        raise UserError(f"the '{strategy}' strategy reads the target languages' profile; give "
                        f"--profile (made with 'babel-edge profile')")
    out = []
    g = torch.Generator().manual_seed(seed)
    for v in ffn_layers(model):
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
                raise UserError(f"unknown strategy '{strategy}'")
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


def adaptive_signal(stats: TargetStats) -> list[float]:
    """g_l: the effective share of experts the target languages use in each layer."""
    return [sched.effective_share(f.tolist()) for f in stats.expert_freq]


def massive_rule() -> str:
    return (f"mean |a| >= {calib.MASSIVE_RATIO:g} x the layer's median neuron: on the targets "
            f"(profile mean), for the median profiled language, or on the target calibration "
            f"text (BOS included)")


def plan_pruning(model, langs: Sequence[str], rate: float, options: PruneOptions = PruneOptions(),
                 *, stats: TargetStats | None = None, calibration: calib.Calibration | None = None,
                 widths: Sequence[int] | None = None) -> PruningPlan:
    """Decide every layer's width and kept neurons (the model is not changed).

    widths: per-layer widths chosen elsewhere (e.g. the `search` schedule); they must meet
    the same budget. Otherwise the options' schedule decides."""
    check_rate(rate)
    o = options.validate()
    full = [v.width for v in ffn_layers(model)]
    unit = sched.unit_for(o.granularity, o.multiple_of, stats.expert_size if stats else None)
    if stats is not None and [int(e.numel()) for e in stats.experts] != full:
        raise UserError("the profile's expert map does not match this model's FFN widths; "
                        "profile this model with 'babel-edge profile'")
    signal = None
    if widths is None:
        if o.schedule == "adaptive":
            if stats is None:
                raise UserError("the adaptive schedule reads the target languages' profile; give "
                                "--profile or use --schedule uniform")
            signal = adaptive_signal(stats)
        widths = sched.layer_widths(full, rate, signal, unit, o.min_keep, o.alpha)
    elif sum(widths) != sched.budget(full, rate, unit) or any(w % unit for w in widths):
        raise ValueError("given widths do not meet the budget in multiples of the unit")
    scores = neuron_importance(o.strategy, model, stats, o.seed)
    layers = []
    for i, w in enumerate(widths):
        protect = protected_neurons(o.strategy, stats, calibration, i)
        if o.granularity == "expert":
            ex = stats.experts[i]
            if o.strategy == "frequency":
                es = stats.expert_freq[i]
            elif o.strategy == "random":
                es = torch.rand(ex.shape[0], generator=torch.Generator().manual_seed(o.seed * 7919 + i))
            else:
                es = scores[i][ex].sum(1)
            kept = choose_experts(es, ex, w, protect)
        else:
            kept = choose_neurons(scores[i], w, protect)
        layers.append(LayerPlan(i, full[i], int(w), kept.tolist(), protect.tolist(),
                                None if signal is None else float(signal[i])))
    formula = {"adaptive": sched.ADAPTIVE_FORMULA, "uniform": sched.UNIFORM_FORMULA}.get(
        o.schedule, "")
    return PruningPlan(list(langs), rate, o.strategy, o.schedule, o.granularity, unit, o.min_keep,
                       o.alpha if o.schedule == "adaptive" else 0.0, o.seed, layers,
                       schedule_formula=formula,
                       massive_rule=None if o.strategy == "random" else massive_rule())

"""Per-layer widths chosen by search: the `search` schedule.

At a fixed total budget of kept neurons, find the widths that bring the pruned model's
next-token distribution closest to the dense model's on calibration text (never
evaluation text). An evolutionary search in the manner of EvoPress (ICML 2025), scaled
down to run in minutes on a CPU:

  levels     every layer's width moves in steps of `step` neurons (a multiple of the
             plan's rounding unit); a layer at width w keeps its w most important neurons
             (select.py's ranking, massive neurons first) with the down columns refit by
             least squares (calibration.compensate), built once per (layer, width)
  fitness    KL(dense || candidate) of the next token, over the union of the dense model's
             top-k tokens at every position (teacher cached once), mean over positions
  mutation   move one step of width from one layer to another (the budget stays exact),
             a few moves per offspring
  selection  each generation: `offspring` candidates scored on a small slice of the text;
             the best `survivors` rescored on the whole text; the parent is replaced only
             by a candidate that beats it there (elitist: fitness never gets worse)
The start is the uniform schedule, so the result is never worse than uniform on the
fitness text. Results are cached by model, languages, rate, options and text.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from ..models.adapters import ffn_layers
from . import calibration as calib
from . import schedule as sched

SEARCH_FORMULA = (
    "widths minimising KL(dense || pruned) of the next token on calibration text (profile "
    "split), found by evolutionary search from the uniform schedule: offspring move one "
    "step of width between two layers per mutation, budget exact; a candidate replaces the "
    "parent only if it is better on the whole fitness text")


@dataclass(frozen=True)
class SearchSettings:
    generations: int = 30
    offspring: int = 8
    survivors: int = 2
    mutations: int = 3              # width moves per offspring (at most)
    step: int | None = None         # neurons per move (default: the unit, at least F/16)
    fit_seqs: int = 8               # sequences of the fitness text
    small_seqs: int = 2             # sequences for the first round of each generation
    seq_len: int = 128
    top_k: int = 32
    seed: int = 0


@dataclass
class SearchResult:
    widths: list[int]
    start: list[int]
    fitness: float                  # KL of the result on the fitness text
    start_fitness: float            # KL of the uniform start
    history: list[float] = field(default_factory=list)   # parent fitness per generation
    evaluations: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"widths": self.widths, "start": self.start, "fitness_kl": self.fitness,
                "start_fitness_kl": self.start_fitness, "history": self.history,
                "evaluations": self.evaluations, "seconds": round(self.seconds, 1),
                "formula": SEARCH_FORMULA}


class Variants:
    """Pruned FFN modules per (layer, width), built on demand from the dense weights."""

    def __init__(self, model, order: Sequence[torch.Tensor], calibration, ridge: float):
        self.views = ffn_layers(model)
        self.dense = [(v.gate, v.up, v.down) for v in self.views]
        self.order = [o.to(torch.long) for o in order]     # per layer: neuron ids, best first
        self.calibration, self.ridge = calibration, ridge
        self.cache: dict[tuple[int, int], tuple[nn.Module, nn.Module, nn.Module]] = {}

    def modules(self, layer: int, width: int):
        key = (layer, width)
        if key not in self.cache:
            from .model_dir import _linear

            gate, up, down = self.dense[layer]
            kept = torch.sort(self.order[layer][:width]).values
            if width == gate.out_features:
                self.cache[key] = (gate, up, down)
            else:
                dw = down.weight[:, kept] if self.calibration is None else calib.compensate(
                    down.weight, self.calibration.second[layer], kept, self.ridge)
                sub = lambda lin: lin.bias[kept] if lin.bias is not None else None  # noqa: E731
                self.cache[key] = (_linear(gate.in_features, width, gate.weight[kept], sub(gate)),
                                   _linear(up.in_features, width, up.weight[kept], sub(up)),
                                   _linear(width, down.out_features, dw, down.bias))
        return self.cache[key]

    def apply(self, model, widths: Sequence[int]) -> None:
        """Make `model`'s FFNs (a copy of the dense model) the variants at `widths`."""
        from ..models.adapters import model_adapter

        ad = model_adapter(model)
        for v, w in zip(ffn_layers(model), widths):
            g, u, d = self.modules(v.index, int(w))
            setattr(v.mlp, ad.gate, g)
            setattr(v.mlp, ad.up, u)
            setattr(v.mlp, ad.down, d)


def _kl(model, ids: torch.Tensor, top, batch: int = 4) -> float:
    from ..heal.distill import candidate_kl

    with torch.inference_mode():
        parts = [float(candidate_kl(model, ids[s:s + batch],
                                    type(top)(top.ids[s:s + batch], top.logp[s:s + batch])))
                 for s in range(0, len(ids), batch)]
        return sum(parts) / len(parts)


def evolve(fitness: Callable[[list[int], int], float], start: list[int], floors: list[int],
           ceilings: list[int], step: int, s: SearchSettings,
           on_generation: Callable[[int, float], None] | None = None) -> SearchResult:
    """The search over widths, given fitness(widths, n_seqs) (lower is better). Pure: testable
    with any fitness function."""
    g = torch.Generator().manual_seed(s.seed)
    t0 = time.perf_counter()
    n = len(start)
    parent = list(start)
    parent_fit = start_fit = fitness(parent, s.fit_seqs)
    history, evals = [parent_fit], 1
    for gen in range(s.generations):
        kids = []
        for _ in range(s.offspring):
            kid = list(parent)
            moves = int(torch.randint(1, s.mutations + 1, (1,), generator=g))
            for _ in range(moves):
                down = [i for i in range(n) if kid[i] - step >= floors[i]]
                up = [i for i in range(n) if kid[i] + step <= ceilings[i]]
                if not down or not up:
                    break
                i = down[int(torch.randint(len(down), (1,), generator=g))]
                j = up[int(torch.randint(len(up), (1,), generator=g))]
                if i != j:
                    kid[i] -= step
                    kid[j] += step
            if kid != parent and kid not in kids:
                kids.append(kid)
        scored = sorted(((fitness(k, s.small_seqs), k) for k in kids), key=lambda t: t[0])
        evals += len(kids)
        for _, kid in scored[:s.survivors]:
            f = fitness(kid, s.fit_seqs)
            evals += 1
            if f < parent_fit:
                parent, parent_fit = kid, f
        history.append(parent_fit)
        if on_generation:
            on_generation(gen + 1, parent_fit)
    return SearchResult(parent, list(start), parent_fit, start_fit, history, evals,
                        time.perf_counter() - t0)


def search_widths(lm, langs: Sequence[str], rate: float, options, *, stats, calibration,
                  texts_for: Callable[[str], Sequence[str]], settings: SearchSettings = SearchSettings(),
                  progress: Callable[[int, int, str], None] | None = None) -> SearchResult:
    """Searched per-layer widths for pruning `lm` at `rate` (cached)."""
    import copy

    from ..heal.data import training_text
    from ..heal.distill import teacher_topk
    from ..models import cache_dir
    from ..io import read_json, write_json
    from .select import _top, neuron_importance, protected_neurons

    model = lm.model
    full = [v.width for v in ffn_layers(model)]
    unit = sched.unit_for(options.granularity, options.multiple_of,
                          stats.expert_size if stats else None)
    # moves are whole units, so every width stays a multiple of the unit and the sum exact
    step = settings.step or max(unit, -(-min(full) // 16 // unit) * unit)
    if step % unit:
        step = -(-step // unit) * unit
    floors = sched.floors(full, unit, options.min_keep)
    start = sched.layer_widths(full, rate, None, unit, options.min_keep)
    text = training_text(list(langs), texts_for, lm.tokenizer, settings.seq_len,
                         settings.fit_seqs * settings.seq_len)
    ids = text.student[:settings.fit_seqs]
    ridge = calib.RIDGE if options.ridge is None else options.ridge   # candidates: one fixed ridge
    key = json.dumps({"fp": lm.fingerprint, "langs": sorted(langs), "rate": rate,
                      "o": [options.strategy, options.granularity, options.multiple_of,
                            options.min_keep, options.compensate, ridge, options.seed],
                      "s": settings.__dict__, "text": text.digest,
                      "cal": None if calibration is None else calibration.key}, sort_keys=True)
    path = cache_dir() / "search" / (hashlib.sha256(key.encode()).hexdigest()[:16] + ".json")
    if path.exists():
        d = read_json(path)
        return SearchResult(d["widths"], d["start"], d["fitness_kl"], d["start_fitness_kl"],
                            d["history"], d["evaluations"], d["seconds"])
    scores = neuron_importance(options.strategy, model, stats, options.seed)
    order = []
    for i, sc in enumerate(scores):
        protect = protected_neurons(options.strategy, stats, calibration, i)
        order.append(_top(sc, full[i], protect))
    top = teacher_topk(model, ids, settings.top_k)
    variants = Variants(model, order, calibration if options.compensate else None, ridge)
    cand = copy.deepcopy(model)
    seen: dict[tuple, float] = {}

    def fitness(widths: list[int], n: int) -> float:
        k = (tuple(widths), n)
        if k not in seen:
            variants.apply(cand, widths)
            seen[k] = _kl(cand, ids[:n], type(top)(top.ids[:n], top.logp[:n]))
        return seen[k]

    res = evolve(fitness, start, floors, full, step, settings,
                 on_generation=(lambda gen, f: progress(gen, settings.generations, f"KL {f:.4f}"))
                 if progress else None)
    write_json(path, res.to_dict())
    return res

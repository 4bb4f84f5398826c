"""Experts from neurons: split every FFN layer's neurons into equal-size groups.

A dense FFN read as a fine-grained mixture of experts (MoEfication, Zhang et al.
2022): the F neurons of a layer (the inputs of its down projection) are split
into E = F / expert_size experts of `expert_size` neurons each. Three splits:

  kmeans        the default, MoEfication's parameter split: balanced
                (size-constrained) k-means over the L2-normalised gate rows, so
                neurons whose gates read similar directions of the residual
                stream end up together.
  coactivation  the same balanced k-means over the neurons' co-activation
                profiles (rows of a neuron x neuron "fired together" count
                matrix recorded on text; see profile.record_coactivation).
  random        a seeded random partition: the baseline every finding is
                compared against.

Every split is deterministic for a given seed. Experts are stored in a
canonical order (by their smallest neuron id) so two runs that find the same
partition produce identical maps.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Sequence

import torch

from .errors import UserError

METHODS = ("kmeans", "coactivation", "random")


@dataclass
class ExpertMap:
    """Which neurons make up which expert, per layer."""
    method: str                                  # one of METHODS
    expert_size: int                             # neurons per expert
    seed: int
    experts: list[torch.Tensor] = field(repr=False)   # per layer: [E, expert_size] int64 neuron ids

    @property
    def n_layers(self) -> int:
        return len(self.experts)

    def n_experts(self, layer: int) -> int:
        return self.experts[layer].shape[0]

    def widths(self) -> list[int]:
        return [e.numel() for e in self.experts]

    def assignment(self, layer: int) -> torch.Tensor:
        """[F] int64: the expert of every neuron of `layer`."""
        ids = self.experts[layer]                              # [E, S]
        out = torch.empty(ids.numel(), dtype=torch.long)
        out[ids.reshape(-1)] = torch.arange(ids.shape[0]).repeat_interleave(ids.shape[1])
        return out

    def one_hot(self, layer: int, dtype=torch.float32) -> torch.Tensor:
        """[F, E] 0/1 matrix: activations [N, F] @ one_hot = per-expert sums [N, E]."""
        a = self.assignment(layer)
        m = torch.zeros(a.numel(), self.n_experts(layer), dtype=dtype)
        m[torch.arange(a.numel()), a] = 1
        return m

    # ---- serialisation: tensors for safetensors + a JSON-able header
    def meta(self) -> dict:
        return {"method": self.method, "expert_size": self.expert_size, "seed": self.seed,
                "n_experts": [self.n_experts(i) for i in range(self.n_layers)],
                "digest": self.digest()}

    def tensors(self, prefix: str = "experts.") -> dict[str, torch.Tensor]:
        return {f"{prefix}{i}": e.to(torch.int32).contiguous() for i, e in enumerate(self.experts)}

    @classmethod
    def from_tensors(cls, meta: dict, tensors: dict[str, torch.Tensor],
                     prefix: str = "experts.") -> "ExpertMap":
        n = len(meta["n_experts"])
        experts = [tensors[f"{prefix}{i}"].to(torch.long) for i in range(n)]
        em = cls(meta["method"], int(meta["expert_size"]), int(meta["seed"]), experts)
        em.validate()
        if meta.get("digest") not in (None, em.digest()):
            raise ValueError("expert map does not match its recorded digest")
        return em

    def digest(self) -> str:
        h = hashlib.sha256(json.dumps([self.method, self.expert_size, self.seed]).encode())
        for e in self.experts:
            h.update(e.to(torch.int32).contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def validate(self) -> None:
        """Every layer's experts are a partition of range(F) into equal groups."""
        for i, e in enumerate(self.experts):
            if e.ndim != 2 or e.shape[1] != self.expert_size:
                raise ValueError(f"layer {i}: expert table has shape {tuple(e.shape)}, "
                                 f"expected [E, {self.expert_size}]")
            if not torch.equal(e.reshape(-1).sort().values, torch.arange(e.numel())):
                raise ValueError(f"layer {i}: experts are not a partition of the neurons")


# ------------------------------------------------------------------ clustering

@contextlib.contextmanager
def _one_thread():
    """Clustering is many small ops: with 2 threads on a busy 2-core machine it ran
    10x slower (29 s vs 2.9 s for Gemma 3 270M) from thread hand-offs, and one
    thread also makes the result independent of the machine's thread count."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _canonical(assign: torch.Tensor, n_clusters: int) -> torch.Tensor:
    """[F] cluster labels -> [E, S] neuron ids, ascending within an expert, experts
    ordered by their smallest neuron (so the table does not depend on label order)."""
    order = torch.argsort(assign * assign.numel() + torch.arange(assign.numel()))  # by label, then id
    table = order.reshape(n_clusters, -1)                     # rows = labels, ids ascending
    return table[torch.argsort(table[:, 0])]


def _balanced_assign(cost: torch.Tensor, capacity: int) -> torch.Tensor:
    """Assign n points to k clusters of exactly `capacity` points, greedily by cost.

    cost: [n, k], n == k * capacity. Rounds of proposals: every unassigned point
    proposes to its cheapest cluster that still has room; each cluster accepts its
    cheapest proposers up to its room. At least one cluster fills (or every
    proposer is placed) per round, so there are at most k + 1 rounds, each a few
    vectorised ops -> milliseconds for 2048 x 64.
    """
    n, k = cost.shape
    assign = torch.full((n,), -1, dtype=torch.long)
    room = torch.full((k,), capacity, dtype=torch.long)
    while True:
        free = (assign < 0).nonzero().squeeze(1)              # [m]
        if free.numel() == 0:
            return assign
        c = cost[free].masked_fill((room == 0)[None, :], float("inf"))   # [m, k]
        best_cost, choice = c.min(dim=1)                      # [m]
        # rank proposers within their chosen cluster by cost (stable sorts keep it deterministic)
        by_cost = torch.argsort(best_cost, stable=True)
        by_cluster = by_cost[torch.argsort(choice[by_cost], stable=True)]
        counts = torch.bincount(choice, minlength=k)
        starts = torch.cumsum(counts, 0) - counts
        sorted_choice = choice[by_cluster]
        rank = torch.arange(free.numel()) - starts[sorted_choice]
        ok = rank < room[sorted_choice]
        accepted = by_cluster[ok]
        assign[free[accepted]] = choice[accepted]
        room -= torch.bincount(choice[accepted], minlength=k)


def _sq_dist(x: torch.Tensor, xx: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """[n, d] points with their squared norms xx [n], [k, d] centres -> [n, k] squared distances."""
    return (xx[:, None] - 2 * x @ c.T + (c * c).sum(1)[None, :]).clamp_min(0)


def balanced_kmeans(x: torch.Tensor, n_clusters: int, seed: int = 0, iters: int = 25) -> torch.Tensor:
    """Size-constrained k-means: [n, d] points -> [n] labels, every cluster n / k points.

    k-means++ seeding from a seeded generator, then Lloyd iterations whose
    assignment step is `_balanced_assign`. The balanced step does not guarantee
    a monotone objective, so the best labelling seen is returned. Runs in float64
    so results do not hinge on BLAS summation order.
    """
    n = x.shape[0]
    if n % n_clusters:
        raise ValueError(f"{n} points cannot form {n_clusters} equal clusters")
    capacity = n // n_clusters
    x = x.to(torch.float64)
    xx = (x * x).sum(1)                                        # [n]
    g = torch.Generator().manual_seed(seed)
    # k-means++: each next centre drawn with probability proportional to squared distance
    # (float32 is plenty for sampling weights and halves the memory traffic of k mat-vecs)
    x32, xx32 = x.float(), xx.float()
    centres = [int(torch.randint(n, (1,), generator=g))]
    d2 = _sq_dist(x32, xx32, x32[centres[-1:]]).squeeze(1)
    for _ in range(1, n_clusters):
        nxt = int(torch.multinomial(d2 + 1e-12, 1, generator=g))
        centres.append(nxt)
        d2 = torch.minimum(d2, _sq_dist(x32, xx32, x32[nxt:nxt + 1]).squeeze(1))
    c = x[centres].clone()                                     # [k, d]
    best, best_obj, prev = None, float("inf"), None
    for _ in range(iters):
        cost = _sq_dist(x, xx, c)                                # [n, k]
        assign = _balanced_assign(cost, capacity)
        obj = float(cost.gather(1, assign[:, None]).sum())
        if obj < best_obj - 1e-9:
            best, best_obj = assign.clone(), obj
        if prev is not None and torch.equal(assign, prev):
            break
        prev = assign
        c = torch.zeros_like(c).index_add_(0, assign, x) / capacity
    return best


def _check_size(widths: Sequence[int], expert_size: int) -> None:
    if expert_size < 1:
        raise UserError(f"--experts-size must be a positive number of neurons, not {expert_size}")
    for i, w in enumerate(widths):
        if w % expert_size:
            divisors = [d for d in (8, 16, 32, 64, 128, 256) if w % d == 0]
            raise UserError(f"layer {i} has {w} FFN neurons, which is not a multiple of "
                            f"--experts-size {expert_size}; choose one of {divisors or [1]}")


# Above this many multiply-adds per Lloyd iteration (F x F/expert_size x hidden, summed over
# the layers) the layers are clustered in parallel processes: 8192 x 3072 layers took 23.7 s
# each on one core (bench/results/kmeans_scaling.md), Gemma 3 270M's 0.2 s (pool start-up
# would cost more than it saves).
PARALLEL_WORK = 2e10


def _cluster_layer(w: torch.Tensor, expert_size: int, seed: int) -> torch.Tensor:
    """One layer's experts ([E, S] neuron ids), single-threaded: the same result in any process."""
    with _one_thread():
        x = torch.nn.functional.normalize(w.detach().to("cpu", torch.float64), dim=1)  # [F, hidden]
        k = w.shape[0] // expert_size
        return _canonical(balanced_kmeans(x, k, seed=seed), k)


def kmeans_split(gate_weights: Sequence[torch.Tensor], expert_size: int = 32,
                 seed: int = 0, workers: int | None = None) -> ExpertMap:
    """MoEfication parameter split. gate_weights: per layer [F, hidden] (gate rows).

    Layers are independent (layer i is seeded with seed + i): with `workers` > 1 they are
    clustered in that many processes, with the same result. Default: one process for small
    models, every core for big ones (PARALLEL_WORK)."""
    _check_size([w.shape[0] for w in gate_weights], expert_size)
    if workers is None:
        work = sum(w.shape[0] ** 2 * w.shape[1] / expert_size for w in gate_weights)
        workers = min(os.cpu_count() or 1, len(gate_weights)) if work > PARALLEL_WORK else 1
    if workers <= 1:
        experts = [_cluster_layer(w, expert_size, seed + i) for i, w in enumerate(gate_weights)]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        cpu = [w.detach().to("cpu") for w in gate_weights]
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            experts = list(pool.map(_cluster_layer, cpu, [expert_size] * len(cpu),
                                    [seed + i for i in range(len(cpu))]))
    return ExpertMap("kmeans", expert_size, seed, experts)


def coactivation_split(coact: Sequence[torch.Tensor], expert_size: int = 32,
                       seed: int = 0) -> ExpertMap:
    """Cluster neurons that fire together. coact: per layer [F, F] counts of tokens on
    which both neurons fired (diagonal = a neuron's own count).

    A neuron's feature is its row normalised by its own count — P(j fires | i
    fires) — L2-normalised; balanced k-means then groups neurons with similar
    co-firing partners."""
    _check_size([c.shape[0] for c in coact], expert_size)
    experts = []
    with _one_thread():
        for i, c in enumerate(coact):
            c = c.to(torch.float64)
            cond = c / c.diagonal().clamp_min(1)[:, None]              # [F, F]
            x = torch.nn.functional.normalize(cond, dim=1)
            k = c.shape[0] // expert_size
            experts.append(_canonical(balanced_kmeans(x, k, seed=seed + i), k))
    return ExpertMap("coactivation", expert_size, seed, experts)


def random_split(widths: Sequence[int], expert_size: int = 32, seed: int = 0) -> ExpertMap:
    """A seeded random partition of each layer's neurons: the baseline."""
    _check_size(widths, expert_size)
    g = torch.Generator().manual_seed(seed)
    experts = []
    for w in widths:
        labels = torch.randperm(w, generator=g) // expert_size   # equal-size random labels
        experts.append(_canonical(labels, w // expert_size))
    return ExpertMap("random", expert_size, seed, experts)


def build_expert_map(model, expert_size: int = 32, method: str = "kmeans", seed: int = 0,
                     coact: Sequence[torch.Tensor] | None = None) -> ExpertMap:
    """The expert map of a loaded model. `coactivation` needs the recorded `coact`
    matrices (profile.record_coactivation); the other two read only weights."""
    from .models.adapters import ffn_layers

    layers = ffn_layers(model)
    if method == "kmeans":
        return kmeans_split([v.gate.weight for v in layers], expert_size, seed)
    if method == "random":
        return random_split([v.width for v in layers], expert_size, seed)
    if method == "coactivation":
        if coact is None:
            raise ValueError("the coactivation split needs recorded co-activation counts")
        return coactivation_split(coact, expert_size, seed)
    raise UserError(f"unknown expert split '{method}'; choose one of {', '.join(METHODS)}")

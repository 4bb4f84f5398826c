"""How wide each FFN layer stays: the per-layer schedule of a pruning run.

`rate` is the share of FFN parameters removed over the whole model. Every FFN
parameter of layer l sits in gate/up rows or down columns, 3 * hidden each per
neuron, and every layer has the same hidden size, so parameters are
proportional to widths and the budget is a number of kept neurons:

    budget B = round((1 - rate) * sum_l F_l / unit) * unit

with `unit` the rounding multiple (32 by default: quantization blocks; 256 for
K-quants; the expert size at expert granularity). The schedule then splits B
over the layers; the result always sums to B exactly.

ADAPTIVE_FORMULA is the formula itself; it is printed in pruning_plan.json.
"""
from __future__ import annotations

import math
from typing import Sequence

from ..errors import UserError
from .options import check_rate

ADAPTIVE_FORMULA = (
    "keep_l = clip(s * F_l * (g_l / mean(g))^alpha, floor_l, F_l), s solved so that "
    "sum_l keep_l = B; then rounded to multiples of `unit` by largest remainder, still summing to B. "
    "g_l = exp(H_l) / E_l, the effective share of experts the target languages use in layer l: "
    "H_l is the entropy of p_le = f_le / sum_e f_le, f_le the activation frequency of expert e in "
    "layer l averaged over the target languages (each weighted equally), E_l the number of experts. "
    "A layer whose activation is spread over many experts (g high) keeps more; a concentrated "
    "layer loses more. alpha = 0 is the uniform schedule. floor_l = max(unit, "
    "ceil(min_keep * F_l / unit) * unit).")

UNIFORM_FORMULA = ("keep_l = B * F_l / sum_l F_l, rounded to multiples of `unit` by largest "
                   "remainder (ties to the shallower layer), summing to B.")


def unit_for(granularity: str, multiple_of: int = 32, expert_size: int | None = None) -> int:
    """The rounding multiple of layer widths: `multiple_of` for neurons; for whole experts
    the least common multiple with the expert size (UserError without one)."""
    if granularity == "neuron":
        return multiple_of
    if granularity != "expert":
        raise UserError(f"unknown granularity '{granularity}'; choose neuron or expert")
    if expert_size is None:
        raise UserError("expert granularity needs the profile's expert map; give --profile")
    return math.lcm(multiple_of, expert_size)


def budget(full: Sequence[int], rate: float, unit: int) -> int:
    """Kept neurons over all layers: (1 - rate) of the total, rounded to a multiple of `unit`."""
    check_rate(rate)
    return int(round((1.0 - rate) * sum(full) / unit)) * unit


def floors(full: Sequence[int], unit: int, min_keep: float) -> list[int]:
    """Narrowest width each layer may reach: at least one unit, at least min_keep of the layer."""
    return [max(unit, math.ceil(min_keep * f / unit) * unit) for f in full]


def _check_units(full: Sequence[int], unit: int) -> None:
    if unit < 1:
        raise UserError(f"--multiple-of must be a positive number of neurons, not {unit}")
    for i, f in enumerate(full):
        if f % unit:
            raise UserError(f"layer {i} has {f} FFN neurons, not a multiple of {unit}; choose a "
                            f"--multiple-of that divides every layer's width")


def _solve_scale(full, weight, lo_w, hi_w, target) -> list[float]:
    """Continuous keep_l = clip(s * full_l * weight_l, lo_l, hi_l) with sum = target (bisection on s)."""
    def keep(s):
        return [min(max(s * f * w, lo), hi) for f, w, lo, hi in zip(full, weight, lo_w, hi_w)]

    a, b = 0.0, 1.0
    while sum(keep(b)) < target:          # target <= sum(hi) is checked by the caller
        b *= 2.0
        if b > 1e12:
            break
    for _ in range(200):
        m = 0.5 * (a + b)
        if sum(keep(m)) < target:
            a = m
        else:
            b = m
    return keep(b)


def _round_units(cont: Sequence[float], lo: Sequence[int], hi: Sequence[int], unit: int,
                 total: int) -> list[int]:
    """Integer multiples of unit within [lo, hi], summing to `total`, closest to `cont`
    (largest remainder; ties go to the shallower layer)."""
    units = [max(lo_ // unit, min(hi_ // unit, math.floor(c / unit + 1e-9)))
             for c, lo_, hi_ in zip(cont, lo, hi)]
    want = total // unit
    # hand out missing units to the largest shortfall first; take back from the smallest
    while sum(units) < want:
        room = [i for i in range(len(units)) if units[i] < hi[i] // unit]
        i = max(room, key=lambda i: (cont[i] / unit - units[i], -i))
        units[i] += 1
    while sum(units) > want:
        room = [i for i in range(len(units)) if units[i] > lo[i] // unit]
        i = min(room, key=lambda i: (cont[i] / unit - units[i], i))
        units[i] -= 1
    return [u * unit for u in units]


def layer_widths(full: Sequence[int], rate: float, signal: Sequence[float] | None = None,
                 unit: int = 32, min_keep: float = 0.1, alpha: float = 1.0) -> list[int]:
    """Kept width of every layer.

    full: the current FFN width of every layer. signal: g_l of ADAPTIVE_FORMULA
    (None or alpha = 0 -> uniform). Returns widths that are multiples of `unit`,
    within [floor_l, F_l], summing to `budget(full, rate, unit)` exactly.
    """
    _check_units(full, unit)
    total = budget(full, rate, unit)
    lo = floors(full, unit, min_keep)
    if total < sum(lo):
        raise UserError(
            f"--rate {rate} would leave {total} neurons over {len(full)} layers, below the floor "
            f"of {sum(lo)} (every layer keeps at least {unit} neurons and {min_keep:.0%} of its "
            f"width); lower --rate, --multiple-of or --min-keep")
    if total > sum(full):
        total = sum(full)
    if signal is None or alpha == 0:
        weight = [1.0] * len(full)
    else:
        if len(signal) != len(full):
            raise ValueError(f"{len(signal)} layer signals for {len(full)} layers")
        g = [max(float(x), 1e-12) for x in signal]
        mean = sum(g) / len(g)
        weight = [(x / mean) ** alpha for x in g]
    cont = _solve_scale(full, weight, lo, list(full), total)
    return _round_units(cont, lo, list(full), unit, total)


def effective_share(freqs: Sequence[float]) -> float:
    """g = exp(entropy of the normalised frequencies) / number of experts, in (0, 1]."""
    tot = sum(freqs)
    if tot <= 0:
        return 1.0
    h = -sum((f / tot) * math.log(f / tot) for f in freqs if f > 0)
    return math.exp(h) / len(freqs)

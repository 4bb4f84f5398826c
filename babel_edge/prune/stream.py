"""Pruning a model bigger than memory: tensor by tensor, safetensors shards in and out.

    plan = plan_streamed(model_dir, langs, rate, options, profile=...)   # weights read lazily
    prune_streamed(model_dir, plan, out_dir, calibration=None)           # -> a pruned directory

The in-memory path (run.py) loads the whole model; this one never holds more than one
source tensor and one output shard (`shard_bytes`), so peak memory grows with the largest
tensor (usually the embedding), not with the model. The importance of each neuron is
computed from the FFN weights of one layer at a time (select.py's strategies: magnitude
needs nothing else; mass and frequency read the profile). Compensation uses a calibration
(calibration.py; computing one needs forward passes: load the model offloaded for that).
The result is the same directory the in-memory path writes for the same plan — tensors
bit for bit (tests compare them on a small model) — and it loads, exports and evaluates
like any pruned directory.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Iterator, Sequence

import torch

from ..errors import UserError
from .plan import LayerPlan, PruningPlan


def _weight_files(model_dir: Path) -> list[Path]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise UserError(f"'{model_dir}' has no .safetensors weights")
    return files


def tensor_names(model_dir: Path) -> dict[str, Path]:
    """Tensor name -> the shard file that holds it (headers only)."""
    from ..io import safetensors_header

    out = {}
    for f in _weight_files(model_dir):
        for name in safetensors_header(f):
            if name != "__metadata__":
                out[name] = f
    return out


def _ffn_names(config: dict, adapter) -> list[dict[str, str]]:
    """Per layer: {"gate"|"up"|"down": weight name}, from the adapter's module paths."""
    n = int(config["num_hidden_layers"])
    base = adapter.layers           # e.g. "model.layers"
    return [{k: f"{base}.{i}.{adapter.mlp}.{getattr(adapter, k)}.weight" for k in ("gate", "up", "down")}
            for i in range(n)]


def _read(name: str, where: dict[str, Path]) -> torch.Tensor:
    from safetensors import safe_open

    with safe_open(str(where[name]), "pt") as f:
        return f.get_tensor(name)


def layer_importance(strategy: str, gate: torch.Tensor, up: torch.Tensor, down: torch.Tensor,
                     stats=None, layer: int = 0, seed_gen: torch.Generator | None = None) -> torch.Tensor:
    """select.neuron_importance for one layer, from its weights (fp32 math)."""
    down_norm = down.float().norm(dim=0)
    if strategy == "magnitude":
        return gate.float().norm(dim=1) * up.float().norm(dim=1) * down_norm
    if strategy == "mass":
        return stats.neuron_mass[layer] * down_norm
    if strategy == "frequency":
        return stats.neuron_freq[layer].clone()
    if strategy == "random":
        return torch.rand(gate.shape[0], generator=seed_gen)
    raise UserError(f"unknown strategy '{strategy}'")


def plan_streamed(model_dir: str | Path, langs: Sequence[str], rate: float, options, *,
                  stats=None, calibration=None) -> PruningPlan:
    """The plan select.plan_pruning makes, reading one layer's FFN weights at a time."""
    from ..models.adapters import adapter_for
    from ..models.loader import read_config
    from . import schedule as sched
    from .options import check_rate
    from .select import _top, adaptive_signal, massive_rule, protected_neurons

    check_rate(rate)
    o = options.validate()
    if o.granularity != "neuron":
        raise UserError("the streamed path prunes single neurons (--granularity neuron)")
    if o.schedule == "search":
        raise UserError("the search schedule runs the model; use uniform or adaptive when streaming")
    d = Path(model_dir)
    cfg = read_config(d)
    ad = adapter_for(cfg.get("model_type", "?"))
    where = tensor_names(d)
    names = _ffn_names(cfg, ad)
    full = [int(torch.Size(_shape(where, n["gate"]))[0]) for n in names]
    signal = None
    if o.schedule == "adaptive":
        if stats is None:
            raise UserError("the adaptive schedule reads the target languages' profile; give one")
        signal = adaptive_signal(stats)
    widths = sched.layer_widths(full, rate, signal, o.multiple_of, o.min_keep, o.alpha)
    g = torch.Generator().manual_seed(o.seed)
    layers = []
    for i, (n, w) in enumerate(zip(names, widths)):
        gate, up, down = (_read(n[k], where) for k in ("gate", "up", "down"))
        scores = layer_importance(o.strategy, gate, up, down, stats, i, g)
        protect = protected_neurons(o.strategy, stats, calibration, i)
        kept = torch.sort(_top(scores, w, protect)).values
        layers.append(LayerPlan(i, full[i], int(w), kept.tolist(), protect.tolist(),
                                None if signal is None else float(signal[i])))
        del gate, up, down
    formula = {"adaptive": sched.ADAPTIVE_FORMULA, "uniform": sched.UNIFORM_FORMULA}[o.schedule]
    return PruningPlan(list(langs), rate, o.strategy, o.schedule, "neuron", o.multiple_of,
                       o.min_keep, o.alpha if o.schedule == "adaptive" else 0.0, o.seed, layers,
                       schedule_formula=formula,
                       massive_rule=None if o.strategy == "random" else massive_rule())


def _shape(where: dict[str, Path], name: str) -> list[int]:
    from ..io import safetensors_header

    return safetensors_header(where[name])[name]["shape"]


def _pruned_tensors(where: dict[str, Path], cfg: dict, plan: PruningPlan, calibration, ridge: float
                    ) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of the pruned model in the source's order, one at a time."""
    from ..models.adapters import adapter_for
    from . import calibration as calib

    ad = adapter_for(cfg.get("model_type", "?"))
    role = {}
    for i, n in enumerate(_ffn_names(cfg, ad)):
        for k, name in n.items():
            role[name] = (i, k)
            role[name[:-len(".weight")] + ".bias"] = (i, k + "_bias")
    for name in where:                      # the source's order (shard by shard)
        t = _read(name, where)
        if name in role:
            i, k = role[name]
            kept = torch.tensor(plan.layers[i].kept, dtype=torch.long)
            if k in ("gate", "up", "gate_bias", "up_bias"):
                t = t[kept]
            elif k == "down":
                t = (calib.compensate(t.float(), calibration.second[i], kept, ridge).to(t.dtype)
                     if calibration is not None else t[:, kept])
            t = t.contiguous()
        yield name, t


def prune_streamed(model_dir: str | Path, plan: PruningPlan, out: str | Path, *,
                   calibration=None, ridge: float | None = None,
                   shard_bytes: int = 512 << 20) -> Path:
    """Write the pruned model of `plan` to `out` without loading the source model."""
    from safetensors.torch import save_file

    from ..io import atomic_dir
    from ..models.loader import read_config
    from .calibration import RIDGE
    from .model_dir import LICENCE_GLOBS, TOKENIZER_FILES, WIDTHS_KEY, check_out_dir

    d, out = Path(model_dir), Path(out)
    check_out_dir(out)
    cfg = read_config(d)
    with atomic_dir(out) as tmp:
        index, shard, size, n, n_out = {}, {}, 0, 0, 0

        def flush():
            nonlocal shard, size, n
            if shard:
                n += 1
                name = f"model-{n:05d}.safetensors"
                save_file(shard, str(tmp / name), metadata={"format": "pt"})
                index.update({k: name for k in shard})
                shard, size = {}, 0

        where = tensor_names(d)
        for name, t in _pruned_tensors(where, cfg, plan, calibration, ridge or RIDGE):
            if size and size + t.numel() * t.element_size() > shard_bytes:
                flush()
            shard[name] = t
            size += t.numel() * t.element_size()
            n_out += t.numel()
        flush()
        if n == 1:                         # one shard: the name transformers expects
            (tmp / "model-00001.safetensors").rename(tmp / "model.safetensors")
        else:
            total = sum((tmp / f).stat().st_size for f in set(index.values()))
            (tmp / "model.safetensors.index.json").write_text(json.dumps(
                {"metadata": {"total_size": total}, "weight_map": index}, indent=1))
        cfg = dict(cfg, intermediate_size=max(plan.widths))
        cfg[WIDTHS_KEY] = plan.widths
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2))
        for pat in list(TOKENIZER_FILES) + list(LICENCE_GLOBS) + ["generation_config.json"]:
            for f in d.glob(pat):
                if f.is_file():
                    shutil.copy2(f, tmp / f.name)
        ffn_before = 3 * int(cfg["hidden_size"]) * sum(plan.widths_before)
        ffn_after = 3 * int(cfg["hidden_size"]) * sum(plan.widths)
        n_in = sum(math.prod(_shape(where, name)) for name in where)
        plan.params = dict(plan.params, ffn_before=ffn_before, ffn_after=ffn_after,
                           total_before=n_in, total_after=n_out)
        plan.extra = dict(plan.extra, streamed=True)
        plan.write(tmp)
    return out


def prune_large(model: str | None, profile: str | Path | None, langs: Sequence[str], rate: float,
                out: str | Path, options) -> tuple[Path, PruningPlan]:
    """What `babel-edge prune --stream` does: check everything, plan and prune tensor by tensor.

    The model is never loaded: only single neurons, no search schedule, no least-squares
    compensation (it needs a calibration, i.e. forward passes of the whole model), no
    vocabulary trimming or healing (both run the model). The profile, when a strategy or
    schedule needs one, must come from the same weights (its fingerprint is checked against
    the directory's, which reads headers and a few sampled bytes)."""
    from ..models.loader import fingerprint, resolve_model_dir
    from ..profile import load_profile
    from .model_dir import check_out_dir
    from .options import check_rate
    from .select import target_stats

    o = options.validate()
    check_rate(rate)
    refused = [name for name, on in (("--trim-vocab", o.trim_vocab), ("--heal", o.heal is not None),
                                     ("--compensate", o.compensate)) if on]
    if refused:
        raise UserError(f"--stream never runs the model, so it cannot do {', '.join(refused)}; "
                        f"add --no-compensate, drop the others, and prune the streamed output "
                        f"again in memory if you need them")
    if o.needs_profile and not profile:
        raise UserError(f"--profile is needed for --strategy {o.strategy} and --schedule "
                        f"{o.schedule}; create one with 'babel-edge profile' (or use --strategy "
                        f"magnitude --schedule uniform)")
    out = Path(out).expanduser()
    check_out_dir(out)
    d = resolve_model_dir(model)
    stats = None
    if o.needs_profile:
        prof = load_profile(profile, model_fingerprint=fingerprint(d))
        stats = target_stats(prof, langs)
    plan = plan_streamed(d, langs, rate, o, stats=stats)
    return prune_streamed(d, plan, out), plan

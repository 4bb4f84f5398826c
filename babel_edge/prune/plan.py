"""The pruning plan: what was kept and why — one dataclass, one reader, one writer.

`plan_pruning` (select.py) makes a PruningPlan; `prune_loaded` (run.py) adds what the run
did (compensation, calibration, parameters, vocabulary, provenance, healing); the pruned
model directory stores it as pruning_plan.json; the exporters, the size estimate, the
evaluator and the TUI read it back with `PruningPlan.read(model_dir)`. No other module
parses pruning_plan.json. Light on imports (no torch): front ends read plans on a
keystroke.

JSON layout (format "babel-edge-pruning-plan", version 1; unknown keys are kept):
    target_langs, rate, realized_rate, strategy, schedule, granularity, multiple_of,
    min_keep, alpha, seed, schedule_formula, budget_neurons, massive_rule,
    layers: [{layer, width_before, width, rate, signal, massive: [ids], kept: [ids]}],
    compensation, calibration, params, provenance, vocab, healing
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PLAN_FILE = "pruning_plan.json"
PLAN_FORMAT = "babel-edge-pruning-plan"
PLAN_VERSION = 1


@dataclass
class LayerPlan:
    layer: int
    width_before: int
    width: int
    kept: list[int]                    # sorted neuron ids that stay
    massive: list[int] = field(default_factory=list)   # protected ids (massive activations)
    signal: float | None = None        # g_l of the adaptive schedule (None: not adaptive)

    @property
    def rate(self) -> float:
        return 1 - self.width / self.width_before

    def to_dict(self) -> dict:
        return {"layer": self.layer, "width_before": self.width_before, "width": self.width,
                "rate": round(self.rate, 6),
                "signal": None if self.signal is None else round(self.signal, 6),
                "massive": list(self.massive), "kept": list(self.kept)}


_KNOWN = ("format", "format_version", "target_langs", "rate", "realized_rate", "strategy",
          "schedule", "granularity", "multiple_of", "min_keep", "alpha", "seed",
          "schedule_formula", "budget_neurons", "massive_rule", "layers", "compensation",
          "calibration", "params", "provenance", "vocab", "healing", "search")


@dataclass
class PruningPlan:
    target_langs: list[str]
    rate: float
    strategy: str
    schedule: str
    granularity: str
    multiple_of: int                   # widths are multiples of this (the rounding unit)
    min_keep: float
    alpha: float
    seed: int
    layers: list[LayerPlan]
    schedule_formula: str = ""
    massive_rule: str | None = None
    compensation: dict = field(default_factory=lambda: {"on": False})
    calibration: dict | None = None
    params: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    vocab: dict | None = None          # babel_edge.vocab's section when the vocabulary was trimmed
    healing: dict | None = None        # what healing did (babel_edge.heal), when it ran
    search: dict | None = None         # the width search (search.py), for the `search` schedule
    extra: dict = field(default_factory=dict)    # keys a newer babel-edge wrote, kept as they are

    @classmethod
    def unpruned(cls, widths: list[int], langs: list[str]) -> "PruningPlan":
        """A plan that keeps every FFN neuron (rate 0): the record of a run that only trims
        the vocabulary or heals."""
        return cls(list(langs), 0.0, "none", "none", "neuron", 1, 0.0, 0.0, 0,
                   [LayerPlan(i, int(w), int(w), list(range(int(w)))) for i, w in enumerate(widths)])

    # ---- derived
    @property
    def widths(self) -> list[int]:
        return [l.width for l in self.layers]

    @property
    def widths_before(self) -> list[int]:
        return [l.width_before for l in self.layers]

    @property
    def kept(self) -> list[list[int]]:
        return [l.kept for l in self.layers]

    @property
    def realized_rate(self) -> float:
        return 1 - sum(self.widths) / sum(self.widths_before)

    @property
    def vocab_trimmed(self) -> bool:
        return bool(self.vocab and self.vocab.get("trimmed"))

    @property
    def kept_token_ids(self) -> list[int] | None:
        """Old token ids the trimmed vocabulary kept (new id = position), or None."""
        return list(self.vocab["kept_ids"]) if self.vocab_trimmed else None

    def describe(self) -> str:
        return (f"FFN rate {self.realized_rate:.3f} for {', '.join(self.target_langs)} "
                f"({self.strategy}, {self.schedule}"
                + (f", vocabulary {self.vocab['kept']:,} tokens" if self.vocab_trimmed else "")
                + (", healed" if self.healing else "") + ")")

    # ---- JSON
    def to_dict(self) -> dict:
        d: dict[str, Any] = {
            "format": PLAN_FORMAT, "format_version": PLAN_VERSION,
            "target_langs": list(self.target_langs), "rate": self.rate,
            "realized_rate": round(self.realized_rate, 6), "strategy": self.strategy,
            "schedule": self.schedule, "granularity": self.granularity,
            "multiple_of": self.multiple_of, "min_keep": self.min_keep, "alpha": self.alpha,
            "seed": self.seed, "schedule_formula": self.schedule_formula,
            "budget_neurons": sum(self.widths), "massive_rule": self.massive_rule,
            "layers": [l.to_dict() for l in self.layers],
            "compensation": self.compensation, "calibration": self.calibration,
            "params": self.params, "provenance": self.provenance,
        }
        if self.vocab is not None:
            d["vocab"] = self.vocab
        if self.healing is not None:
            d["healing"] = self.healing
        if self.search is not None:
            d["search"] = self.search
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PruningPlan":
        from ..errors import UserError

        if d.get("format", PLAN_FORMAT) != PLAN_FORMAT:
            raise UserError(f"not a babel-edge pruning plan (format {d.get('format')!r})")
        if int(d.get("format_version", PLAN_VERSION)) > PLAN_VERSION:
            raise UserError("this pruning plan was written by a newer babel-edge; upgrade to read it")
        try:
            layers = [LayerPlan(int(l["layer"]), int(l["width_before"]), int(l["width"]),
                                [int(i) for i in l.get("kept", [])],
                                [int(i) for i in l.get("massive", [])], l.get("signal"))
                      for l in d["layers"]]
            return cls(target_langs=list(d["target_langs"]), rate=float(d["rate"]),
                       strategy=d.get("strategy", "?"), schedule=d.get("schedule", "?"),
                       granularity=d.get("granularity", "neuron"),
                       multiple_of=int(d.get("multiple_of", 1)),
                       min_keep=float(d.get("min_keep", 0.0)), alpha=float(d.get("alpha", 0.0)),
                       seed=int(d.get("seed", 0)), layers=layers,
                       schedule_formula=d.get("schedule_formula", ""),
                       massive_rule=d.get("massive_rule"),
                       compensation=d.get("compensation") or {"on": False},
                       calibration=d.get("calibration"), params=d.get("params") or {},
                       provenance=d.get("provenance") or {}, vocab=d.get("vocab"),
                       healing=d.get("healing"), search=d.get("search"),
                       extra={k: v for k, v in d.items() if k not in _KNOWN})
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"the pruning plan is damaged ({type(e).__name__}: {e}); prune again") from None

    @classmethod
    def read(cls, model_dir: str | Path | None) -> "PruningPlan | None":
        """The plan of a pruned-model directory (or an export that carries it); None when the
        directory has none (a dense model). A damaged plan is a UserError, not None."""
        import json

        from ..errors import UserError

        if model_dir is None:
            return None
        p = Path(model_dir) / PLAN_FILE
        if not p.is_file():
            return None
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(f"cannot read {p}: {e}; prune again") from None
        return cls.from_dict(data)

    def write(self, model_dir: str | Path) -> Path:
        import json

        from ..io import write_text

        return write_text(Path(model_dir) / PLAN_FILE,
                          json.dumps(self.to_dict(), indent=1, ensure_ascii=False))

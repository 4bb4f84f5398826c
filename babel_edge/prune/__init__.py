"""Prune a model's FFN (and optionally its vocabulary) to what a set of target languages uses.

    profile (per-language neuron/expert stats) ─┐
    calibration (target text, profile split) ───┼─► plan: per-layer widths + kept neuron ids
    model weights ──────────────────────────────┘        └─► physical removal (+ compensation)
                                                                 └─► pruned model directory

Modules, in the order the data flows:
  options.py      PruneOptions: every setting, validated once
  calibration.py  neuron statistics on target-language text; compensation; massive neurons
  schedule.py     how wide each layer stays (uniform / adaptive), budgets in units
  select.py       profile -> target statistics -> importance -> PruningPlan
  plan.py         PruningPlan: the one reader and writer of pruning_plan.json
  model_dir.py    physical removal of neurons; save / load a pruned-model directory
  run.py          prune_loaded (in memory) and prune (load, prune, trim, save)
Vocabulary trimming lives in babel_edge.vocab; healing in babel_edge.heal.
"""
# Names are loaded on first use, so `babel_edge.prune.options` / `.plan` / `.schedule` stay
# light (no torch) for front ends that only read plans or check options.
_WHERE = {
    "calibration": ("Calibration", "calibrate", "compensate", "massive_neurons"),
    "model_dir": ("ffn_params", "ffn_widths", "file_size", "load_pruned", "save_pruned",
                  "set_width_config", "shrink_layer"),
    "options": ("GRANULARITIES", "LANGUAGE_STRATEGIES", "SCHEDULES", "STRATEGIES", "PruneOptions",
                "check_rate"),
    "plan": ("PLAN_FILE", "LayerPlan", "PruningPlan"),
    "run": ("apply_plan", "prune", "prune_loaded"),
    "select": ("TargetStats", "adaptive_signal", "choose_experts", "choose_neurons",
               "plan_pruning", "target_stats"),
}
_MODULE_OF = {name: mod for mod, names in _WHERE.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    import importlib

    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

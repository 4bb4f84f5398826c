"""Healing: recover what pruning lost by training the kept FFN weights against the dense model.

    options.py   HealOptions (tokens, epochs, learning rates, budget, device, ...)
    data.py      training text: target-language fitting text packed into sequences
    block.py     block reconstruction, layer by layer (the main recovery)
    distill.py   end-to-end distillation over the teacher's top-k tokens (optional polish)
    run.py       heal_loaded (in memory) and heal (a pruned directory -> a healed one)
The result is an ordinary pruned-model directory; its plan records what healing did.
"""
from .options import HealOptions

__all__ = ["HealOptions", "heal", "heal_loaded"]


def __getattr__(name):
    if name in ("heal", "heal_loaded"):
        from . import run
        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

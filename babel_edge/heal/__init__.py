"""Healing: recover what pruning lost by training the kept FFN weights (and, on request, the
rest of the decoder) against the dense model.

    options.py   HealOptions (tokens, epochs, learning rates, budget, device, ...)
    data.py      training text: target-language fitting text packed into sequences
    block.py     block reconstruction, layer by layer: each kept FFN alone
    distill.py   end-to-end distillation over the teacher's top-k tokens: the kept FFN
                 weights, or every decoder weight (distill_params="all")
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

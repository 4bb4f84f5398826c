"""How to prune: every setting of a pruning run in one object, validated once.

The CLI (`prune`, `build`), the pipeline and the TUI all fill a PruneOptions and hand
it on unchanged; `validate()` runs before anything expensive (no model is loaded
when an option is wrong). Light on imports: front ends build one per keystroke.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from ..errors import UserError

STRATEGIES = ("mass", "frequency", "magnitude", "random")
LANGUAGE_STRATEGIES = ("mass", "frequency")      # read the target languages' profile
SCHEDULES = ("adaptive", "uniform")
GRANULARITIES = ("neuron", "expert")

# Ridge of the compensation solve, relative to the mean diagonal of C[K, K]
# (the mean squared activation of the kept neurons). Small enough not to bias
# the fit, large enough to keep the solve well-posed for neurons that barely
# ever fire (their C rows are ~0).
RIDGE = 1e-3


@dataclass(frozen=True)
class PruneOptions:
    strategy: str = "mass"             # how neurons of a layer are ranked (select.py)
    schedule: str = "adaptive"         # how wide each layer stays (schedule.py)
    granularity: str = "neuron"        # neuron | expert (whole experts of the profile)
    compensate: bool = True            # least-squares refit of the kept down columns
    multiple_of: int = 32              # widths are multiples of this
    min_keep: float = 0.1              # every layer keeps at least this share
    alpha: float = 1.0                 # strength of the adaptive schedule (0 = uniform)
    seed: int = 0
    calib_tokens: int = 16384          # calibration tokens over all target languages
    ridge: float = RIDGE
    trim_vocab: bool = False           # also trim the vocabulary (babel_edge.vocab)
    vocab_text: tuple[str, ...] = field(default_factory=tuple)   # user text files for trimming

    @property
    def needs_profile(self) -> bool:
        return (self.strategy in LANGUAGE_STRATEGIES or self.schedule == "adaptive"
                or self.granularity == "expert")

    def with_(self, **changes) -> "PruneOptions":
        return replace(self, **changes)

    def validate(self) -> "PruneOptions":
        """UserError for a setting that cannot work; returns self."""
        if self.strategy not in STRATEGIES:
            raise UserError(f"unknown strategy '{self.strategy}'; choose one of {', '.join(STRATEGIES)}")
        if self.schedule not in SCHEDULES:
            raise UserError(f"unknown schedule '{self.schedule}'; choose one of {', '.join(SCHEDULES)}")
        if self.granularity not in GRANULARITIES:
            raise UserError(f"unknown granularity '{self.granularity}'; choose neuron or expert")
        if self.multiple_of < 1:
            raise UserError(f"--multiple-of must be a positive number of neurons, not {self.multiple_of}")
        if not 0 <= self.min_keep < 1:
            raise UserError(f"--min-keep is a share of each layer's width in [0, 1), not {self.min_keep}")
        if self.alpha < 0 or math.isnan(self.alpha):
            raise UserError(f"--alpha must be >= 0, not {self.alpha}")
        if self.calib_tokens < 1:
            raise UserError(f"--calib-tokens must be positive, not {self.calib_tokens}")
        if not self.ridge > 0:
            raise UserError(f"the compensation ridge must be positive, not {self.ridge}")
        if self.vocab_text and not self.trim_vocab:
            raise UserError("--vocab-text chooses the tokens --trim-vocab keeps; add --trim-vocab")
        return self


def check_rate(rate: float) -> None:
    if not (0.0 < rate < 1.0) or math.isnan(rate):
        raise UserError(f"--rate is the share of FFN parameters to remove and must lie strictly "
                        f"between 0 and 1, not {rate}")


def as_paths(paths: Sequence[str | Path] | str | Path | None) -> tuple[str, ...]:
    if not paths:
        return ()
    if isinstance(paths, (str, Path)):
        return (str(paths),)
    return tuple(str(p) for p in paths)

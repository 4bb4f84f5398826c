"""How to prune: every setting of a pruning run in one object, validated once.

The CLI (`prune`, `build`), the pipeline and the TUI all fill a PruneOptions and hand
it on unchanged; `validate()` runs before anything expensive (no model is loaded
when an option is wrong). Light on imports: front ends build one per keystroke.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..errors import UserError

if TYPE_CHECKING:
    from ..heal.options import HealOptions

STRATEGIES = ("mass", "frequency", "magnitude", "random")
LANGUAGE_STRATEGIES = ("mass", "frequency")      # read the target languages' profile
SCHEDULES = ("adaptive", "uniform", "search")
GRANULARITIES = ("neuron", "expert")
VOCAB_EVIDENCE = ("language", "text")

# Ridge of the compensation solve, relative to the mean diagonal of C[K, K]
# (the mean squared activation of the kept neurons). Small enough not to bias
# the fit, large enough to keep the solve well-posed for neurons that barely
# ever fire (their C rows are ~0).
RIDGE = 1e-3
# With the default `ridge=None` the ridge is chosen per layer from this grid on a domain held
# out of the fit (calibration.choose_ridges); RIDGE stays the value where no domain can be
# held out and the one the width search builds its candidates with.
RIDGE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)

# A neuron is "massive" when its mean |activation| on the target languages is at least
# MASSIVE_RATIO times the median neuron's of the same layer. They act like per-layer
# biases: active on every token, with a large magnitude, and a collective failure point:
# on Gemma 3 270M zeroing them all multiplies perplexity by orders of magnitude, zeroing as
# many random neurons barely moves it (bench/bench_massive.py ->
# bench/results/massive_gemma3_270m.md). Every strategy but `random` keeps them.
MASSIVE_RATIO = 20.0


@dataclass(frozen=True)
class PruneOptions:
    strategy: str = "mass"             # how neurons of a layer are ranked (select.py)
    schedule: str = "search"           # how wide each layer stays (search.py; schedule.py)
    granularity: str = "neuron"        # neuron | expert (whole experts of the profile)
    compensate: bool = True            # least-squares refit of the kept down columns
    multiple_of: int = 32              # widths are multiples of this
    min_keep: float = 0.1              # every layer keeps at least this share
    alpha: float = 1.0                 # strength of the adaptive schedule (0 = uniform)
    seed: int = 0
    calib_tokens: int = 16384          # calibration tokens over all target languages
    ridge: float | None = None         # None: chosen per layer on a held-out domain (RIDGE_GRID)
    trim_vocab: bool = False           # also trim the vocabulary (babel_edge.vocab)
    vocab_text: tuple[str, ...] = field(default_factory=tuple)   # user text files for trimming
    vocab_size: int | None = None      # kept tokens in all (None: every token with evidence)
    vocab_evidence: str = "language"   # language (wordfreq + text, ranked) | text (fitting text only)
    heal: "HealOptions | None" = None  # heal after cutting, before trimming (babel_edge.heal)
    heal_text: tuple[str, ...] = field(default_factory=tuple)    # user text files for healing

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
        if self.ridge is not None and not self.ridge > 0:
            raise UserError(f"the compensation ridge must be positive, not {self.ridge}")
        if self.vocab_text and not self.trim_vocab:
            raise UserError("--vocab-text chooses the tokens --trim-vocab keeps; add --trim-vocab")
        if self.vocab_size is not None and not self.trim_vocab:
            raise UserError("--vocab-size is the size of the trimmed vocabulary; add --trim-vocab")
        if self.vocab_size is not None and self.vocab_size < 1:
            raise UserError(f"--vocab-size must be positive, not {self.vocab_size}")
        if self.vocab_evidence not in VOCAB_EVIDENCE:
            raise UserError(f"unknown --vocab-evidence '{self.vocab_evidence}'; use "
                            f"{' or '.join(VOCAB_EVIDENCE)}")
        if self.vocab_size is not None and self.vocab_evidence != "language":
            raise UserError("--vocab-size ranks tokens by language evidence; use --vocab-evidence language")
        if self.heal_text and self.heal is None:
            raise UserError("--heal-text is training text for --heal; add --heal")
        if self.heal is not None:
            self.heal.validate()
        return self


def check_rate(rate: float, allow_zero: bool = False) -> None:
    """A share of FFN parameters to remove: in (0, 1), or 0 (no FFN pruning) where the run does
    something else (vocabulary trimming)."""
    if math.isnan(rate) or not (0.0 < rate < 1.0 or (allow_zero and rate == 0.0)):
        raise UserError(f"--rate is the share of FFN parameters to remove and must lie strictly "
                        f"between 0 and 1{' (or be 0 with --trim-vocab)' if allow_zero else ''}, "
                        f"not {rate}")


def as_paths(paths: Sequence[str | Path] | str | Path | None) -> tuple[str, ...]:
    if not paths:
        return ()
    if isinstance(paths, (str, Path)):
        return (str(paths),)
    return tuple(str(p) for p in paths)

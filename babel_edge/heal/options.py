"""How to heal a pruned model: every setting in one object, validated once (light imports)."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..errors import UserError

DEVICES = ("cpu", "cuda")
# what end-to-end distillation trains: the kept FFN weights only, or every weight of the
# decoder (attention, norms, FFN) — never the embedding and output head (tied in most small
# models, and trimmed when the vocabulary is)
DISTILL_PARAMS = ("ffn", "all")


@dataclass(frozen=True)
class HealOptions:
    tokens: int = 65_536            # training tokens (target languages' profile splits + user text)
    seq_len: int = 256              # tokens per training sequence (BOS + packed paragraphs)
    # Defaults: the best recipe measured on the embedded model, rate 0.5, en/de/fr, 2-core CPU
    # (bench/results/heal_gemma3_270m.md): 2 block passes + 100 distillation steps took 21 min
    # and moved unseen-domain bits per byte from x1.28 to x1.20 of dense and fixed counting;
    # the blocks alone (7.6 min) reached x1.22 and did not.
    epochs: int = 2                 # block reconstruction: passes over the tokens per layer (0: skip)
    target: str = "mlp"             # mlp: the dense FFN on the same input; block: the dense residual
    lr: float = 3e-4                # Adam learning rate of the kept FFN weights
    batch_tokens: int = 1024        # tokens per optimisation step
    holdout: float = 0.05           # share of the training sequences held out to pick the best epoch
    distill_steps: int = 100        # end-to-end distillation steps after the blocks (0 = none)
    distill_lr: float = 5e-5
    distill_batch: int = 4          # sequences per distillation step
    top_k: int = 32                 # teacher tokens kept per position for distillation
    distill_params: str = "ffn"     # ffn: the kept FFN weights; all: every decoder weight
    budget_minutes: float | None = None   # wall-clock cap for the whole run (None: no cap)
    device: str = "cpu"             # cuda trains in bf16 autocast
    threads: int | None = None      # torch threads on CPU (None: torch's default)
    seed: int = 0

    def with_(self, **changes) -> "HealOptions":
        return replace(self, **changes)

    def validate(self) -> "HealOptions":
        if self.tokens < self.seq_len or self.seq_len < 8:
            raise UserError(f"--heal-tokens must be at least one sequence ({self.seq_len} tokens) "
                            f"and sequences at least 8 tokens")
        if self.epochs < 0 or self.batch_tokens < 1 or self.distill_steps < 0:
            raise UserError("healing epochs and distill steps must be >= 0, the batch positive")
        if self.epochs == 0 and self.distill_steps == 0:
            raise UserError("nothing to heal with: give --heal-epochs >= 1 (block reconstruction) "
                            "or --distill-steps >= 1 (distillation)")
        if not (0 < self.lr < 1) or not (0 < self.distill_lr < 1):
            raise UserError(f"the healing learning rates must be in (0, 1), not {self.lr}")
        if not 0 <= self.holdout < 0.5:
            raise UserError("the held-out share of healing text must be in [0, 0.5)")
        if self.budget_minutes is not None and (self.budget_minutes <= 0 or math.isnan(self.budget_minutes)):
            raise UserError(f"--budget-minutes must be positive, not {self.budget_minutes}")
        if self.target not in ("mlp", "block"):
            raise UserError(f"unknown healing target '{self.target}'; use mlp or block")
        if self.device not in DEVICES:
            raise UserError(f"unknown device '{self.device}'; use cpu or cuda")
        if self.distill_params not in DISTILL_PARAMS:
            raise UserError(f"unknown --distill-params '{self.distill_params}'; use ffn or all")
        if self.top_k < 1:
            raise UserError("--top-k must be at least 1")
        return self

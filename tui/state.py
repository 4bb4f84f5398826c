"""What the wizard has chosen so far: one plain dataclass, turned into the pipeline's
BuildOptions (with its PruneOptions) at the end. Defaults come from those option
objects themselves, so the TUI and the CLI's `build` start from the same values."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..pipeline import BuildOptions
from ..prune.options import PruneOptions


def default_option(name: str) -> Any:
    """The default of a BuildOptions field, or of a PruneOptions field inside it."""
    for cls in (BuildOptions, PruneOptions):
        f = cls.__dataclass_fields__.get(name)
        if f is not None:
            if f.default is not dataclasses.MISSING:
                return f.default
            return f.default_factory()  # type: ignore[misc]
    raise KeyError(name)


@dataclass
class WizardState:
    # 1. model
    model: str | None = default_option("model")          # None: the embedded default
    model_info: dict | None = None                  # describe_model(), once checked
    model_dir: str | None = None                    # the HF directory behind `model`, once known
    fingerprint: str | None = None
    shape: Any = None                               # estimate.ModelShape, once known
    # 2. languages
    langs: list[str] = field(default_factory=list)
    previews: Any = None                            # estimate.Previews of this model's profiles
    # 3. budget
    rate: float = default_option("rate")
    schedule: str = default_option("schedule")
    granularity: str = default_option("granularity")
    trim_vocab: bool = default_option("trim_vocab")
    vocab_size: int | None = default_option("vocab_size")      # None: every token with evidence
    heal: bool = False                                          # heal after cutting (HealOptions())
    # 4. export
    gguf_quant: str | None = default_option("gguf_quant")
    onnx_precision: str | None = default_option("onnx_precision")
    out_dir: str = "babel-edge-build"
    force: bool = False
    # fixed for a session (make_app arguments)
    tokens_per_lang: int = default_option("tokens_per_lang")
    bench_rounds: int = default_option("bench_rounds")
    other_langs: tuple[str, ...] = tuple(default_option("other_langs"))

    def build_options(self) -> BuildOptions:
        from ..heal.options import HealOptions

        prune = PruneOptions(schedule=self.schedule, granularity=self.granularity,
                             trim_vocab=self.trim_vocab,
                             vocab_size=self.vocab_size if self.trim_vocab else None,
                             heal=HealOptions() if self.heal else None)
        return BuildOptions(langs=list(self.langs), rate=self.rate, model=self.model,
                            gguf_quant=self.gguf_quant, onnx_precision=self.onnx_precision,
                            tokens_per_lang=self.tokens_per_lang, prune=prune,
                            bench_rounds=self.bench_rounds, other_langs=list(self.other_langs),
                            force=self.force)

    @property
    def model_label(self) -> str:
        if self.model is None:
            return "embedded default"
        return self.shape.name if self.shape is not None else self.model

    def estimate(self):
        """estimate.plan_estimate for the current choices (UserError when impossible);
        None until the model's shape is known."""
        from ..estimate import DEFAULT_EXPERT_SIZE, plan_estimate

        if self.shape is None:
            return None
        signal = self.previews.signal(self.langs) if self.previews is not None else None
        size = self.previews.expert_size if self.previews is not None else DEFAULT_EXPERT_SIZE
        return plan_estimate(self.shape, self.rate, self.schedule, self.granularity, signal,
                             expert_size=size,
                             formats={"gguf": self.gguf_quant, "onnx": self.onnx_precision},
                             vocab_size=self.vocab_size if self.trim_vocab else None)

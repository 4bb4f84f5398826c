"""The profile as data: per-language counts and sums, and every mean derived from them."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from ..errors import UserError
from ..experts import ExpertMap

FORMAT = "babel-edge-profile"
FORMAT_VERSION = 1
HEADER_KEY = "babel_edge"

ACTIVATION = {
    "point": "input of each FFN's down projection: a = act(gate(x)) * up(x)",
    "expert_mass": "sum of |a| over the expert's neurons, per token",
    "expert_active": "expert mass among the top-k experts of its layer on that token",
    "frequency": "share of a language's counted tokens on which the expert was active",
    "neuron_fires": "|a| above the mean |a| of its layer's neurons on that token",
    "counted_tokens": "text tokens only; BOS/special tokens and padding are not counted",
}

from . import DEFAULT_MIN_TOKENS, DEFAULT_TOKENS_PER_LANG  # noqa: F401 - re-exported


def top_k_for(n_experts: int, share: float) -> int:
    return max(1, min(n_experts, round(share * n_experts)))


@dataclass
class LangStats:
    """One language's activations reduced to counts (fixed size whatever the token count)."""
    tokens: int
    expert_count: list[torch.Tensor]     # per layer [E] int64: tokens with the expert active
    neuron_count: list[torch.Tensor]     # per layer [F] int64: tokens with the neuron firing
    neuron_mass: list[torch.Tensor]      # per layer [F] float64: summed |a|
    baseline_count: list[torch.Tensor]   # per layer [E] int64: expert_count under the random split

    @classmethod
    def zeros(cls, emap: ExpertMap, baseline: ExpertMap, device="cpu") -> "LangStats":
        z = lambda n, dt: torch.zeros(n, dtype=dt, device=device)  # noqa: E731
        L = emap.n_layers
        return cls(0, [z(emap.n_experts(i), torch.long) for i in range(L)],
                   [z(w, torch.long) for w in emap.widths()],
                   [z(w, torch.float64) for w in emap.widths()],
                   [z(baseline.n_experts(i), torch.long) for i in range(L)])

    def to(self, device) -> "LangStats":
        mv = lambda ts: [t.to(device) for t in ts]  # noqa: E731
        return LangStats(self.tokens, mv(self.expert_count), mv(self.neuron_count),
                         mv(self.neuron_mass), mv(self.baseline_count))


_FIELDS = ("expert_count", "neuron_count", "neuron_mass", "baseline_count")


@dataclass
class Profile:
    """Stats of several languages (rows in `langs` order) plus what they were measured on."""
    header: dict                          # model, experts, activation, languages, run
    langs: list[str]
    tokens: torch.Tensor                  # [Lang] int64 counted tokens
    expert_map: ExpertMap
    baseline_map: ExpertMap               # the random split recorded alongside
    expert_count: list[torch.Tensor]      # per layer [Lang, E] int64
    neuron_count: list[torch.Tensor]      # per layer [Lang, F] int64
    neuron_mass: list[torch.Tensor]       # per layer [Lang, F] float64 summed |a|
    baseline_count: list[torch.Tensor]    # per layer [Lang, E] int64
    path: Path | None = field(default=None, compare=False)

    @property
    def n_layers(self) -> int:
        return self.expert_map.n_layers

    @property
    def fingerprint(self) -> str:
        return self.header["model"]["fingerprint"]

    def lang_index(self, code: str) -> int:
        if code in self.langs:
            return self.langs.index(code)
        from ..corpus import UnknownLanguageError, match_tag

        try:      # the same language under another tag: "zh" for a "zh-Hans" profile
            hit = match_tag(code, self.langs)
        except UnknownLanguageError:
            hit = None
        if hit is None:
            raise UserError(f"language '{code}' is not in this profile "
                            f"({', '.join(self.langs)}); profile it first")
        return self.langs.index(hit)

    def language_info(self) -> list[dict]:
        return self.header["languages"]

    def families(self) -> list[str]:
        return [d.get("family") or "?" for d in self.header["languages"]]

    def _per_token(self, t: torch.Tensor) -> torch.Tensor:
        return t.double() / self.tokens.double().clamp_min(1)[:, None]

    # ---- derived views; every mean lives here
    def expert_freq(self, layer: int) -> torch.Tensor:
        """[Lang, E] share of tokens on which each expert was active."""
        return self._per_token(self.expert_count[layer])

    def baseline_freq(self, layer: int) -> torch.Tensor:
        """[Lang, E] the same under the random split."""
        return self._per_token(self.baseline_count[layer])

    def neuron_freq(self, layer: int) -> torch.Tensor:
        """[Lang, F] share of tokens on which each neuron fired."""
        return self._per_token(self.neuron_count[layer])

    def neuron_mean_mass(self, layer: int) -> torch.Tensor:
        """[Lang, F] mean |a| per token of each neuron (the pruner's `mass` importance)."""
        return self._per_token(self.neuron_mass[layer])

    def expert_mean_mass(self, layer: int) -> torch.Tensor:
        """[Lang, E] mean activation mass per token of each expert."""
        return self.neuron_mean_mass(layer) @ self.expert_map.one_hot(layer, torch.float64)

    def layer_mean_mass(self) -> torch.Tensor:
        """[Lang, Layer] mean total |a| per token of each layer (its activation level)."""
        return torch.stack([self.neuron_mean_mass(i).sum(1) for i in range(self.n_layers)], 1)

    def freq_grid(self, baseline: bool = False) -> torch.Tensor:
        """[Lang, Layer, E] expert frequencies (layers with fewer experts padded with NaN)."""
        f = [self.baseline_freq(i) if baseline else self.expert_freq(i) for i in range(self.n_layers)]
        e = max(t.shape[1] for t in f)
        out = torch.full((len(self.langs), self.n_layers, e), float("nan"), dtype=torch.float64)
        for i, t in enumerate(f):
            out[:, i, :t.shape[1]] = t
        return out

    def select(self, langs: Sequence[str]) -> "Profile":
        """The same profile restricted to `langs` (in that order)."""
        idx = torch.tensor([self.lang_index(c) for c in langs], dtype=torch.long)
        header = dict(self.header, languages=[self.header["languages"][i] for i in idx.tolist()])
        pick = lambda ts: [t[idx] for t in ts]  # noqa: E731
        return Profile(header, list(langs), self.tokens[idx], self.expert_map, self.baseline_map,
                       pick(self.expert_count), pick(self.neuron_count), pick(self.neuron_mass),
                       pick(self.baseline_count), self.path)

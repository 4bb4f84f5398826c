"""Architecture adapters: where each supported family keeps its FFN, as data.

Every later stage (profiler hooks, pruner, exporters) reaches the FFN through
`ffn_layers(model)`, so a new family is one row in `ADAPTERS`, not a branch in
each stage.

The FFN of every supported family is gated:  y = down( act(gate(x)) * up(x) )
    x: [tokens, hidden]   gate, up: hidden -> ffn   down: ffn -> hidden
The "neurons" are the ffn-wide input of `down`; that point is where the
profiler reads activations and where the pruner cuts.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn


class UnsupportedArchitectureError(ValueError):
    """The model's architecture has no adapter."""


@dataclass(frozen=True)
class Adapter:
    family: str            # human name shown to users
    layers: str            # dotted path from the CausalLM to the decoder layer list
    mlp: str               # attribute of a decoder layer holding the FFN
    gate: str              # FFN sub-module names
    up: str
    down: str
    act: str               # attribute of the FFN holding its activation function
    gguf_arch: str         # llama.cpp architecture name of the dense model
    pre_mlp_norm: str      # decoder-layer norm whose input is the residual entering the FFN
    post_mlp_norm: str | None = None   # norm applied to the FFN output before the residual add


_LLAMA_LIKE = dict(layers="model.layers", mlp="mlp", gate="gate_proj", up="up_proj",
                   down="down_proj", act="act_fn")
# Llama-style blocks: h = h + attn(norm(h)); h = h + mlp(post_attention_layernorm(h))
_LLAMA_BLOCK = dict(pre_mlp_norm="post_attention_layernorm")
# Gemma 2/3 sandwich norms: h = h + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(h)))
_GEMMA_BLOCK = dict(pre_mlp_norm="pre_feedforward_layernorm",
                    post_mlp_norm="post_feedforward_layernorm")

# config.model_type -> adapter. Aliases share a row.
ADAPTERS: dict[str, Adapter] = {
    "llama": Adapter(family="Llama", gguf_arch="llama", **_LLAMA_LIKE, **_LLAMA_BLOCK),
    "mistral": Adapter(family="Mistral", gguf_arch="llama", **_LLAMA_LIKE, **_LLAMA_BLOCK),
    "qwen2": Adapter(family="Qwen2", gguf_arch="qwen2", **_LLAMA_LIKE, **_LLAMA_BLOCK),
    "gemma2": Adapter(family="Gemma 2", gguf_arch="gemma2", **_LLAMA_LIKE, **_GEMMA_BLOCK),
    "gemma3_text": Adapter(family="Gemma 3", gguf_arch="gemma3", **_LLAMA_LIKE, **_GEMMA_BLOCK),
}
# Multimodal Gemma 3 configs wrap a text config; we only ever load the text model.
ALIASES = {"gemma3": "gemma3_text"}


def supported_model_types() -> list[str]:
    return sorted(ADAPTERS)


def supported_families() -> str:
    return ", ".join(sorted({a.family for a in ADAPTERS.values()}))


def adapter_for(model_type: str) -> Adapter:
    key = ALIASES.get(model_type, model_type)
    if key not in ADAPTERS:
        raise UnsupportedArchitectureError(
            f"unsupported architecture '{model_type}'; supported: {supported_families()} "
            f"(config model_type one of {', '.join(supported_model_types())})")
    return ADAPTERS[key]


@dataclass
class FFNView:
    """One decoder layer's FFN, seen through its adapter."""
    index: int
    mlp: nn.Module
    gate: nn.Linear        # weight [ffn, hidden]
    up: nn.Linear          # weight [ffn, hidden]
    down: nn.Linear        # weight [hidden, ffn]
    act: nn.Module
    layer: nn.Module | None = None          # the decoder layer holding it
    pre_norm: nn.Module | None = None       # its input is the residual entering the FFN
    post_norm: nn.Module | None = None      # applied to the FFN output (Gemma), else None

    def block_output(self, residual, ffn_input):
        """What the decoder layer's FFN half adds up to: residual + [post_norm](mlp(ffn_input))."""
        y = self.mlp(ffn_input)
        return residual + (self.post_norm(y) if self.post_norm is not None else y)

    @property
    def width(self) -> int:
        return self.down.in_features


def _get(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def model_adapter(model: nn.Module) -> Adapter:
    return adapter_for(model.config.model_type)


def ffn_layers(model: nn.Module) -> list[FFNView]:
    """The FFN of every decoder layer, in depth order."""
    ad = model_adapter(model)
    views = []
    for i, layer in enumerate(decoder_layers(model)):
        mlp = getattr(layer, ad.mlp)
        views.append(FFNView(i, mlp, getattr(mlp, ad.gate), getattr(mlp, ad.up),
                             getattr(mlp, ad.down), getattr(mlp, ad.act), layer,
                             getattr(layer, ad.pre_mlp_norm),
                             getattr(layer, ad.post_mlp_norm) if ad.post_mlp_norm else None))
    return views


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a causal LM, in depth order."""
    return _get(model, model_adapter(model).layers)

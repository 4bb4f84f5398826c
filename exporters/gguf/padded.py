"""Zero-padding FFN widths: exact, but the padding is stored and computed.

Used (1) for families without a stock llama.cpp architecture that reads per-layer
widths (Gemma 2: its attention-logit soft-capping exists only in `gemma2`, whose loader
gives every layer layer 0's width), and (2) on request (`--align N`), so K-quants whose
blocks are 256 wide can take ffn_down. A zero neuron adds nothing: its gate/up rows and
its down column are all zeros, so act(0) * 0 contributes 0 to the layer output.
"""
from __future__ import annotations

import numpy as np

NO_PER_LAYER_REASON = {
    "gemma2": "no stock llama.cpp architecture computes Gemma 2 with per-layer FFN widths "
              "(attention-logit soft-capping exists only in 'gemma2', whose loader gives every "
              "layer one width)",
}


def round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def aligned(widths: list[int], align: int | None) -> list[int]:
    return [round_up(w, align) for w in widths] if align else list(widths)


def to_widest(widths: list[int]) -> list[int]:
    return [max(widths)] * len(widths)


def pad_tensors(out: dict[str, np.ndarray], widths: list[int], stored: list[int],
                layers=None) -> None:
    """Append zero neurons to every layer (of `layers`, default all) whose stored width exceeds
    its true width (in place)."""
    for il in (range(len(widths)) if layers is None else layers):
        width, st = widths[il], stored[il]
        pad = st - width
        if pad <= 0:
            continue
        p = f"blk.{il}."
        for kind in ("ffn_gate", "ffn_up"):
            for suf in (".weight", ".bias"):
                k = p + kind + suf
                if k in out:
                    a = out[k]
                    out[k] = np.concatenate([a, np.zeros((pad, *a.shape[1:]), a.dtype)], axis=0)
        k = p + "ffn_down.weight"
        out[k] = np.concatenate([out[k], np.zeros((out[k].shape[0], pad), out[k].dtype)], axis=1)

"""`deci`: where Llama, Mistral and Qwen2 go when their layers have different FFN widths.

llama.cpp's `deci` (used by Nemotron-NAS) builds Llama blocks — RMSNorm, SwiGLU, GQA,
optional q/k/v/o biases, rope type NORM (pairs of adjacent dims), attention scale
1/sqrt(head_dim), optional rope_freqs factors — and its loader reads each layer's
width with `hparams.n_ff(il)`. HF stores q/k rows with the two rotary halves split, so
their rows are interleaved back (tensors.interleave_rope_rows), as for `llama`.
A layer written with width 0 would lose its attention output in deci's graph (it
`continue`s before the residual add), so such a layer is written with MIN_STORED_WIDTH
zero neurons (exact).
"""
from __future__ import annotations

MIN_STORED_WIDTH = 32      # one Q8_0/Q5_0 block of zero neurons


def stored_widths(widths: list[int]) -> tuple[list[int], str | None]:
    """Widths to write, and a note when a width-0 layer had to be filled."""
    if not any(w == 0 for w in widths):
        return list(widths), None
    return ([w or MIN_STORED_WIDTH for w in widths],
            f"layers pruned to width 0 are written with {MIN_STORED_WIDTH} zero neurons "
            f"(exact; llama.cpp's deci graph drops a width-0 layer's attention output)")

"""Every precision babel-edge can export, in one table.

    get("gguf", "q8") -> Precision(name="q8_0", ...)     (aliases resolved, UserError if unknown)
    names("onnx")     -> ("fp32", "fp16", "int8", "int4")

A row says what the exporters, the size estimate, the parity check and the front ends
need to know about a precision: its file format, the average bits a weight takes in
the file (block scales included), how llama.cpp's quantizer spells it, and the parity
gate an export at that precision must pass against the PyTorch model it came from.
Nothing else in babel-edge spells these facts out. This module imports nothing heavy.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import UserError

FORMATS = ("gguf", "onnx")


@dataclass(frozen=True)
class Gate:
    """Parity thresholds of an export against its PyTorch reference (exporters/parity.py)."""
    max_abs_diff: float | None     # None: not meaningful at this precision (quantized weights)
    argmax_agreement: float        # share of positions whose top-1 token agrees, at least
    ppl_ratio: float               # exported / reference perplexity, at most (and >= 1/ratio)


@dataclass(frozen=True)
class Precision:
    name: str
    format: str                    # "gguf" | "onnx"
    bits_per_weight: float         # average stored bits per weight, block scales included
    gate: Gate
    description: str
    llama_ftype: str | None = None  # llama_cpp.LLAMA_FTYPE_* for llama.cpp's quantizer
    aliases: tuple[str, ...] = ()

    @property
    def quantized(self) -> bool:
        return self.gate.max_abs_diff is None


# Gates: fp32 runtimes agree to ~1e-4 (onnxruntime) and ~3e-2 (llama.cpp, whose F16 KV
# cache alone moves logits that much); quantized weights move logits by O(1) and are
# judged by top-1 agreement and perplexity instead.
# GGUF K-quant gates are set from the embedded Gemma 3 270M (dense, trimmed and pruned) by one
# rule: argmax gate = lowest measured agreement - 0.05, rounded down to 0.05; perplexity gate =
# 1 + 2 x the largest measured |ratio - 1|, rounded up to 0.05, at least 1.05. Measured:
#   q8_0 95.2-95.3%, x1.004-1.009; q4_k_m 90.6-93.8%, x0.992-0.994; q3_k_m 67.9-68.6%,
#   x1.40-1.41 (bench/results/frontier/frontier.json); q6_k 93.8% x1.007, q5_k_m 87.3%
#   x1.067, q4_k_s 85.6% x1.069, iq4_nl 69.0% x1.234 (bench/bench_export_gguf.py, pruned
#   rate 0.5: bench/results/export_gguf_2026-12-03.log); iq4_nl 71.1-73.9% x1.228-1.264 and
#   q2_k 55.9-56.5% x1.96-2.22 (vocabulary 64k, unpruned and FFN 0.5: frontier.json).
# ONNX int8/int4 by the same rule, through onnxruntime (bench/bench_export_onnx.py ->
# bench/results/export_onnx_gates.json, dense and pruned 0.5; and the make demo exports):
#   int8 94.2-96.1%, x1.004-1.011; int4 77.2-81.7%, x1.136-1.253. Reduced ONNX precisions also
#   hold the fp32 graph they are made from to the fp32 gate (exporters/onnx run_parity).
_ROWS = [
    Precision("f32", "gguf", 32.0, Gate(0.1, 0.98, 1.01), "32-bit floats (written by gguf-py)",
              aliases=("fp32",)),
    Precision("f16", "gguf", 16.0, Gate(1.0, 0.95, 1.02),
              "16-bit floats; norms and out-of-range tensors stay F32", aliases=("fp16",)),
    Precision("q8_0", "gguf", 8.5, Gate(None, 0.90, 1.05), "8-bit blocks of 32 (llama.cpp)",
              "LLAMA_FTYPE_MOSTLY_Q8_0", aliases=("q8",)),
    Precision("q6_k", "gguf", 6.56, Gate(None, 0.85, 1.05), "6-bit K-quant (llama.cpp)",
              "LLAMA_FTYPE_MOSTLY_Q6_K", aliases=("q6",)),
    Precision("q5_k_m", "gguf", 5.7, Gate(None, 0.80, 1.15),
              "5-bit K-quant, attn_v/ffn_down partly Q6_K (llama.cpp)",
              "LLAMA_FTYPE_MOSTLY_Q5_K_M", aliases=("q5",)),
    Precision("q4_k_m", "gguf", 4.9, Gate(None, 0.85, 1.05),
              "4-bit K-quant, attn_v/ffn_down partly Q6_K (llama.cpp)",
              "LLAMA_FTYPE_MOSTLY_Q4_K_M", aliases=("q4",)),
    Precision("q4_k_s", "gguf", 4.6, Gate(None, 0.80, 1.15), "4-bit K-quant (llama.cpp)",
              "LLAMA_FTYPE_MOSTLY_Q4_K_S"),
    Precision("q4_0", "gguf", 4.5, Gate(None, 0.70, 1.35), "4-bit blocks of 32 (llama.cpp)",
              "LLAMA_FTYPE_MOSTLY_Q4_0"),
    Precision("iq4_nl", "gguf", 4.5, Gate(None, 0.60, 1.55),
              "4-bit non-linear blocks of 32 (llama.cpp)", "LLAMA_FTYPE_MOSTLY_IQ4_NL"),
    Precision("q3_k_m", "gguf", 3.9, Gate(None, 0.60, 1.85),
              "3-bit K-quant, attn_v/ffn_down partly Q4_K/Q5_K (llama.cpp)",
              "LLAMA_FTYPE_MOSTLY_Q3_K_M", aliases=("q3",)),
    Precision("q2_k", "gguf", 3.0, Gate(None, 0.50, 3.45),
              "2-bit K-quant, attention and ffn_down at 3-4 bits (llama.cpp)",
              "LLAMA_FTYPE_MOSTLY_Q2_K", aliases=("q2",)),
    Precision("fp32", "onnx", 32.0, Gate(1e-2, 0.99, 1.005), "32-bit floats"),
    Precision("fp16", "onnx", 16.0, Gate(1.0, 0.95, 1.02), "16-bit floats, KV cache in fp16"),
    Precision("int8", "onnx", 9.0, Gate(None, 0.85, 1.05),
              "weight-only 8-bit blocks of 32 (MatMulNBits)"),
    Precision("int4", "onnx", 6.0, Gate(None, 0.70, 1.55),
              "weight-only 4-bit blocks of 16, V and FFN-down at 8 bits (MatMulNBits)"),
]

PRECISIONS: dict[tuple[str, str], Precision] = {(p.format, p.name): p for p in _ROWS}
DEFAULT = {"gguf": "q8_0", "onnx": "fp32"}


def names(fmt: str) -> tuple[str, ...]:
    return tuple(p.name for p in PRECISIONS.values() if p.format == fmt)


def get(fmt: str, name: str | None = None) -> Precision:
    """The row for `name` (an alias, any case; None: the format's default) in `fmt`."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format '{fmt}'; choose {' or '.join(FORMATS)}")
    key = (name or DEFAULT[fmt]).strip().lower()
    for p in PRECISIONS.values():
        if p.format == fmt and (key == p.name or key in p.aliases):
            return p
    raise UserError(f"unknown {fmt.upper()} precision '{name}'; choose one of {', '.join(names(fmt))}")


def gate(name: str) -> Gate:
    """The parity gate of a precision by its canonical name (names are unique across formats)."""
    for p in PRECISIONS.values():
        if p.name == name:
            return p.gate
    raise ValueError(f"no parity gate for precision '{name}'")


def file_bytes(params: int, fmt: str, name: str) -> int:
    """Rough file size of `params` weights at a precision (the size estimate's rule)."""
    return int(params * get(fmt, name).bits_per_weight / 8)

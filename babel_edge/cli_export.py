"""`babel-edge export`: bake a (pruned) model into one GGUF file or an ONNX directory.

The command parses arguments and calls the library: exporters.gguf.export_gguf or
exporters.onnx.export_onnx. Both check the export against PyTorch (parity) before
the artefact appears at --out, and both write a summary JSON next to it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .errors import UserError

FORMATS = ("gguf", "onnx")
DEFAULT_QUANT = {"gguf": "q8_0", "onnx": "fp32"}

EPILOG = """\
precisions:
  gguf   f32, f16, q8_0 (default), q4_k_m, q4_0 — q8_0 and the 4-bit ones through
         llama.cpp's own quantizer; K-quants need rows that are multiples of 256,
         other tensors fall back per tensor (reported). fp32/fp16 are accepted as
         aliases of f32/f16.
  onnx   fp32 (default), fp16 (for GPUs), int8 (dynamic), int4 (weight-only)

GGUF architectures (stock llama.cpp, no patched build):
  every layer the same width  the family's own (llama, qwen2, gemma2, gemma3)
  per-layer FFN widths        Llama/Mistral/Qwen2 -> deci, Gemma 3 -> gemma4
                              (rewritten so they compute exactly the same function),
                              Gemma 2 -> gemma2 zero-padded to the widest layer
                              (exact, but no savings; the summary says so)

Every export is compared with the PyTorch model on prompts in several scripts
and a few evaluation paragraphs (max |Δlogit|, argmax agreement, perplexity);
an export that misses its precision's thresholds fails with exit code 1 and
leaves nothing at --out. Bad input exits with code 2 and one line.

examples:
  babel-edge export --model pruned-en-de-fr --format gguf --quant q4_k_m --out en-de-fr.gguf
  babel-edge export --format gguf --quant q8_0 --out dense.gguf     (the embedded model)
  babel-edge export --model pruned-en-de-fr --format onnx --quant int8 --out en-de-fr-onnx
"""


def cmd_export(args) -> int:
    """Exit 0 on success, 1 when the export misses parity (one line, nothing left at --out)."""
    import sys

    from .exporters.parity import ParityError

    try:
        return _export(args)
    except ParityError as e:
        print(f"babel-edge export: {e}", file=sys.stderr)
        return 1


def _export(args) -> int:
    if args.threads is not None and args.threads < 1:
        raise UserError("--threads must be at least 1")
    fmt = args.format
    quant = args.quant or DEFAULT_QUANT[fmt]
    out = Path(args.out).expanduser()
    if fmt == "gguf":
        from .exporters.gguf import check_out, export_gguf, format_summary, load_for_export, \
            normalize_quant

        quant = normalize_quant(quant)
        check_out(out, args.force)                     # cheap checks before loading the model
        lm = load_for_export(args.model)
        summary = export_gguf(lm, out, quant, force=args.force, align=args.align,
                              threads=args.threads, verbose=False)
        print(format_summary(summary))
        return 0

    from .exporters.gguf import load_for_export
    from .exporters import onnx as onnx_exporter     # imported here: it pulls in onnx/onnxruntime

    if quant not in onnx_exporter.PRECISIONS:
        raise UserError(f"unknown ONNX precision '{quant}'; choose one of "
                        f"{', '.join(onnx_exporter.PRECISIONS)}")
    if args.align:
        raise UserError("--align applies to GGUF only (ONNX stores every layer at its own width)")
    if out.exists() and not args.force:
        raise UserError(f"'{out}' already exists; pass --force to replace it")
    lm = load_for_export(args.model)
    summary = onnx_exporter.export_onnx(lm, out, quant, force=args.force, verbose=False)
    fmt_summary = getattr(onnx_exporter, "format_summary", None)
    print(fmt_summary(summary) if fmt_summary else f"ONNX {quant} export → {out}")
    return 0


def register(sub) -> None:
    s = sub.add_parser(
        "export", help="bake a (pruned) model into GGUF (llama.cpp) or ONNX (onnxruntime)",
        description="Export a model — a directory written by 'babel-edge prune', a Hugging Face "
                    "model directory, or the embedded model — to one GGUF file that stock "
                    "llama.cpp runs, or to an ONNX directory with KV cache that onnxruntime and "
                    "optimum run. Only the retained FFN neurons are stored. The export is "
                    "parity-checked against PyTorch and a summary (format, precision, size, "
                    "parameters, per-layer widths, padding, tensor types, parity) is printed "
                    "and saved as JSON next to it.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--model", help="pruned-model directory, Hugging Face model directory, .gguf "
                                   "file or embedded model name (default: gemma-3-270m)")
    s.add_argument("--format", required=True, choices=FORMATS, help="gguf or onnx")
    s.add_argument("--quant", metavar="PRECISION",
                   help="gguf: f32|f16|q8_0|q4_k_m|q4_0 (default q8_0); "
                        "onnx: fp32|fp16|int8|int4 (default fp32)")
    s.add_argument("--out", required=True, metavar="PATH",
                   help="gguf: the .gguf file to write; onnx: the directory to write")
    s.add_argument("--force", action="store_true",
                   help="replace PATH if it exists (only after the new export passes parity)")
    s.add_argument("--align", type=int, metavar="N",
                   help="gguf: zero-pad every FFN width up to a multiple of N (exact; e.g. 256 "
                        "lets K-quants take ffn_down instead of falling back)")
    s.add_argument("--threads", type=int, metavar="N",
                   help="gguf: threads for llama.cpp and the PyTorch reference (default: all "
                        "cores; on a busy machine 1 can be much faster)")
    s.set_defaults(func=cmd_export)

"""`babel-edge export`: bake a (pruned) model into one GGUF file or an ONNX directory.

The command parses arguments and calls the library: exporters.gguf.export_gguf or
exporters.onnx.export_onnx. Both check the export against PyTorch (parity) before
the artefact appears at --out, and both write a summary JSON next to it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import precision as P
from ..errors import UserError

EPILOG = """\
precisions:
{precisions}

GGUF architectures (stock llama.cpp, no patched build):
  every layer the same width  the family's own (llama, qwen2, gemma2, gemma3)
  per-layer FFN widths        Llama/Mistral/Qwen2 -> deci (the same function, exactly);
                              Gemma 3 -> gemma4: exact but for gemma4's weightless V norm,
                              made a fixed linear map up to a per-token gain error that
                              is bounded for every input (the bound is in the summary and
                              the metadata: babel_edge.gemma4.v_norm_gain_error_bound);
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




def _precision_lines() -> str:
    lines = []
    for fmt in P.FORMATS:
        for name in P.names(fmt):
            p = P.get(fmt, name)
            alias = f" (alias {', '.join(p.aliases)})" if p.aliases else ""
            default = " [default]" if P.DEFAULT[fmt] == name else ""
            lines.append(f"  {fmt:5s} {name:7s} {p.description}{alias}{default}")
    return "\n".join(lines)


def run(args) -> int:
    from ..exporters.parity import ParityError

    try:
        return _export(args)
    except ParityError as e:
        print(f"babel-edge export: {e}", file=sys.stderr)
        return 1


def _export(args) -> int:
    if args.threads is not None and args.threads < 1:
        raise UserError("--threads must be at least 1")
    fmt = args.format
    quant = P.get(fmt, args.quant).name                # cheap checks before loading the model
    out = Path(args.out).expanduser()
    if fmt == "gguf":
        from ..exporters.gguf import check_out, export_gguf, format_summary
        from ..models import load_model

        check_out(out, args.force)
        if args.stream:
            from ..exporters.gguf.stream import export_gguf_streamed, format_streamed_summary
            from ..models.loader import resolve_model_dir

            summary = export_gguf_streamed(resolve_model_dir(args.model), out, quant,
                                           force=args.force, threads=args.threads)
            print(format_streamed_summary(summary))
            return 0
        summary = export_gguf(load_model(args.model), out, quant, force=args.force,
                              align=args.align, threads=args.threads, verbose=False)
        print(format_summary(summary))
        return 0
    from ..exporters import onnx as onnx_exporter     # imported here: it pulls in onnx/onnxruntime
    from ..models import load_model

    if args.stream:
        raise UserError("--stream applies to GGUF only (the ONNX export traces the loaded model)")
    if args.align:
        raise UserError("--align applies to GGUF only (ONNX stores every layer at its own width)")
    onnx_exporter.check_out(out, args.force)
    summary = onnx_exporter.export_onnx(load_model(args.model), out, quant, force=args.force,
                                        verbose=False)
    print(onnx_exporter.format_summary(summary))
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
        epilog=EPILOG.format(precisions=_precision_lines()), formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--model", help="pruned-model directory, Hugging Face model directory, .gguf "
                                   "file or embedded model name (default: gemma-3-270m)")
    s.add_argument("--format", required=True, choices=P.FORMATS, help="gguf or onnx")
    s.add_argument("--quant", metavar="PRECISION",
                   help=f"gguf: {'|'.join(P.names('gguf'))} (default {P.DEFAULT['gguf']}); "
                        f"onnx: {'|'.join(P.names('onnx'))} (default {P.DEFAULT['onnx']})")
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
    s.add_argument("--stream", action="store_true",
                   help="gguf: for a model bigger than memory: write the GGUF one decoder layer at "
                        "a time from the safetensors shards; parity runs in its own process")
    s.set_defaults(func=run)

"""`babel-edge eval` (alias `ppl`): per-language perplexity and bits per byte of any artefact."""
from __future__ import annotations

from pathlib import Path

from rich.table import Table

from .common import CORPUS_HELP, LANGS_HELP, MODEL_HELP, out

DESCRIPTION = """\
Score a model on the corpus's evaluation split (never the text profiling, calibration or
vocabulary choice read) for each language — the target languages of a pruned model and
all the others — with bits per UTF-8 byte (comparable across tokenizers: every model
scores byte-identical text, whole paragraphs, never cut by a token budget) and
perplexity per token. MODEL may be a pruned-model directory, a Hugging Face directory,
the embedded model, a .gguf file (llama.cpp) or an ONNX export (onnxruntime). Results
are printed and saved as JSON (default: eval.json inside a model directory you gave,
else eval-<name>.json here). `ppl` is the same command.
"""


def register(sub) -> None:
    from ..evaluate import DEFAULT_MAX_BYTES, DEFAULT_MAX_LEN
    from ..runtime.engines import BACKENDS

    for name, helptext in (("eval", "per-language bits per byte and perplexity of a (pruned) model"),
                           ("ppl", "the same as eval")):
        s = sub.add_parser(name, help=helptext, description=DESCRIPTION)
        s.add_argument("--model", help=MODEL_HELP + ", or an ONNX export directory")
        s.add_argument("--engine", choices=BACKENDS,
                       help="back end (default: chosen from what --model is: .gguf → llama.cpp, "
                            "ONNX export → onnxruntime, else torch)")
        s.add_argument("--langs", help=LANGS_HELP)
        s.add_argument("--corpus", help=CORPUS_HELP)
        s.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                       help=f"UTF-8 bytes of text scored per language (default {DEFAULT_MAX_BYTES:,})")
        s.add_argument("--max-len", type=int, default=DEFAULT_MAX_LEN,
                       help=f"longest sequence in tokens (default {DEFAULT_MAX_LEN}); paragraphs are "
                            f"split into pieces of at most MAX_LEN - 2 bytes")
        s.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
        s.add_argument("--json", help="where to save the results (JSON)")
        s.set_defaults(func=run)


def run(args) -> int:
    from ..errors import UserError
    from ..evaluate import default_report_path, evaluate_model
    from ..io import write_json

    if args.max_bytes < 1 or args.max_len < 16:
        raise UserError("--max-bytes must be positive and --max-len at least 16")
    rep = evaluate_model(args.model, args.langs, args.corpus, args.max_bytes, args.max_len,
                         engine=args.engine, threads=args.threads)
    name = Path(rep["model"]).name
    t = Table(title=f"eval split — {name} ({rep['engine']})")
    for col in ("lang", "target", "paragraph pieces", "tokens", "bits/byte", "perplexity"):
        t.add_column(col, justify="left" if col in ("lang", "target") else "right")
    for r in sorted(rep["results"], key=lambda r: (not r["target"], r["lang"])):
        t.add_row(r["lang"], "yes" if r["target"] else "", str(r["n_texts"]), str(r["n_tokens"]),
                  f"{r['bits_per_byte']:.3f}", f"{r['ppl']:.2f}")
    out.print(t)
    s = rep["summary"]
    if s["target_bits_per_byte_mean"] is not None:
        line = (f"targets ({', '.join(rep['target_langs'])}): mean bits/byte "
                f"{s['target_bits_per_byte_mean']:.3f}")
        if s["other_bits_per_byte_mean"] is not None:
            line += f"; other languages: {s['other_bits_per_byte_mean']:.3f}"
        out.print(line)
    if "params" in rep:
        out.print(f"parameters {rep['params']['total']:,} (FFN {rep['params']['ffn']:,}); weight "
                  f"files {rep['file_bytes'] / 1e6:,.1f} MB")
    else:
        out.print(f"file {rep['file_bytes'] / 1e6:,.1f} MB")
    dest = Path(args.json) if args.json else default_report_path(rep["model"], args.model)
    write_json(dest, rep)
    out.print(f"saved {dest}")
    return 0

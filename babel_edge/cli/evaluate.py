"""`babel-edge eval` (alias `ppl`): per-language perplexity and bits per byte of any artefact."""
from __future__ import annotations

from pathlib import Path

from rich.table import Table

from .common import CORPUS_HELP, LANGS_HELP, MODEL_HELP, out

DESCRIPTION = """\
Score a model on two texts no fitting step read, for each language — the target languages
of a pruned model and all the others: first the *unseen* domain (the eval split of the
corpus domain held out of profiling, calibration, vocabulary choice and healing for these
languages), then the in-domain eval split. Reported: bits per UTF-8 byte (comparable
across tokenizers: every model scores byte-identical text, whole paragraphs, never cut by
a token budget) and perplexity per token. MODEL may be a pruned-model directory, a Hugging Face directory,
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
        s.add_argument("--no-generate", action="store_true",
                       help="skip the greedy continuations of fixed prompts (counting, a capital, "
                            "a story opening) in the target languages")
        s.add_argument("--json", help="where to save the results (JSON)")
        s.set_defaults(func=run)


def run(args) -> int:
    from ..errors import UserError
    from ..evaluate import default_report_path, evaluate_model
    from ..io import write_json

    if args.max_bytes < 1 or args.max_len < 16:
        raise UserError("--max-bytes must be positive and --max-len at least 16")
    if args.json:                      # a bad --json is reported before the model loads
        dest = Path(args.json).expanduser()
        if dest.is_dir():
            raise UserError(f"--json '{dest}' is a directory; give a file name such as "
                            f"{dest / 'eval.json'}")
        if not dest.parent.is_dir():
            raise UserError(f"--json '{dest}': folder '{dest.parent}' does not exist; create it first")
    rep = evaluate_model(args.model, args.langs, args.corpus, args.max_bytes, args.max_len,
                         engine=args.engine, threads=args.threads, generate=not args.no_generate)
    name = Path(rep["model"]).name
    sets = rep["texts"]
    t = Table(title=f"{name} ({rep['engine']}) — bits per byte" + (
        f"; unseen = the '{rep['unseen_domain']}' domain, held out of every fitting step"
        if rep["unseen_domain"] else ""))
    t.add_column("lang")
    t.add_column("target")
    for s_ in sets:
        t.add_column(f"bits/byte {s_}", justify="right")
    for s_ in sets:
        t.add_column(f"perplexity {s_}", justify="right")
    by = {(r["lang"], r["text"]): r for r in rep["results"]}
    for lang in dict.fromkeys(r["lang"] for r in sorted(rep["results"],
                                                        key=lambda r: (not r["target"], r["lang"]))):
        cells = [by.get((lang, s_)) for s_ in sets]
        t.add_row(lang, "yes" if lang in rep["target_langs"] else "",
                  *[f"{c['bits_per_byte']:.3f}" if c else "" for c in cells],
                  *[f"{c['ppl']:.2f}" if c else "" for c in cells])
    out.print(t)
    for s_ in sets:
        sm = rep["summary"][s_]
        if sm["target_bits_per_byte_mean"] is not None:
            line = (f"{s_}: targets ({', '.join(rep['target_langs'])}) mean bits/byte "
                    f"{sm['target_bits_per_byte_mean']:.3f}")
            if sm["other_bits_per_byte_mean"] is not None:
                line += f"; other languages {sm['other_bits_per_byte_mean']:.3f}"
            out.print(line)
    if "params" in rep:
        out.print(f"parameters {rep['params']['total']:,} (FFN {rep['params']['ffn']:,}); weight "
                  f"files {rep['file_bytes'] / 1e6:,.1f} MB")
    else:
        out.print(f"file {rep['file_bytes'] / 1e6:,.1f} MB")
    if rep.get("generation"):
        g = Table(title="greedy continuations (repeated 4-grams: share of 4-grams seen before in "
                        "the continuation)")
        for col in ("lang", "prompt", "continuation", "4-gram repeats", "expected"):
            g.add_column(col)
        for lang, rows in rep["generation"].items():
            for r in rows:
                g.add_row(lang, r["prompt"], r["continuation"][:60], f"{r['repeated_4gram_share']:.0%}",
                          "" if r["expected"] is None else
                          f"{r['expected']}: {'yes' if r['correct'] else 'no'}")
        out.print(g)
    dest = Path(args.json) if args.json else default_report_path(rep["model"], args.model)
    write_json(dest, rep)
    out.print(f"saved {dest}")
    return 0

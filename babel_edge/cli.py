"""The `babel-edge` command line.

Each subcommand is a small function that parses nothing itself: argparse hands
it the arguments, it calls the library function with the same meaning, prints
a table. Bad input raises one of `errors.user_error_types()`, which becomes one
line on stderr and exit code 2 — never a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from . import __version__

out = Console()   # tables go to stdout; progress goes to stderr


def _write_json_atomic(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    os.replace(tmp, path)


# ------------------------------------------------------------------ models

def cmd_models(args) -> int:
    from .models import EMBEDDED, DEFAULT_MODEL, cache_dir, describe_model
    from .models.loader import is_prepared
    from .models.adapters import ADAPTERS

    if args.model:
        info = describe_model(args.model)
        t = Table(title=f"model {args.model}", show_header=False)
        for k, v in info.items():
            t.add_row(k, str(v))
        out.print(t)
        return 0
    t = Table(title="embedded models (use the name as --model)")
    for col in ("name", "description", "prepared"):
        t.add_column(col)
    for name, em in EMBEDDED.items():
        ready = is_prepared(name)
        t.add_row(name + (" (default)" if name == DEFAULT_MODEL else ""), em.description,
                  "yes" if ready else "no (first use converts it, about a minute)")
    out.print(t)
    t = Table(title="architectures a local model directory or .gguf file may have")
    t.add_column("family")
    t.add_column("config model_type")
    for mt, ad in sorted(ADAPTERS.items(), key=lambda kv: kv[1].family):
        t.add_row(ad.family, mt)
    out.print(t)
    out.print(f"cache: {cache_dir()}  (set BABEL_EDGE_CACHE to move it)")
    return 0


# ------------------------------------------------------------------ langs

def cmd_langs(args) -> int:
    from .corpus import load_corpus, load_user_corpus

    corpus = load_user_corpus(args.corpus) if args.corpus else load_corpus()
    stats = corpus.stats()
    t = Table(title=f"corpus languages ({len(stats)}, "
                    f"{len({s.family for s in stats})} families)")
    for col in ("code", "name", "family", "script", "source", "profile chars", "eval chars"):
        t.add_column(col, justify="right" if "chars" in col else "left")
    for s in sorted(stats, key=lambda s: (s.family, s.code)):
        t.add_row(s.code, s.name, s.family, s.script, s.source,
                  f"{s.n_chars['profile']:,}", f"{s.n_chars['eval']:,}")
    out.print(t)
    return 0


# ------------------------------------------------------------------ ppl

def cmd_ppl(args) -> int:
    from .corpus import load_corpus, load_user_corpus, parse_langs
    from .evaluate import evaluate_languages

    corpus = load_user_corpus(args.corpus) if args.corpus else load_corpus()
    langs = parse_langs(args.langs) if args.langs else corpus.languages()
    for lang in langs:
        corpus.texts(lang, "eval")          # fail early on a language the corpus lacks
    if args.engine == "torch":
        from .evaluate import hf_tokenize, torch_scorer
        from .models import load_model

        lm = load_model(args.model)
        tokenize = hf_tokenize(lm.tokenizer)
        scorer = torch_scorer(lm.model, pad_id=lm.tokenizer.pad_token_id or 0)
        name = lm.path.name
    else:
        from .models import gguf_for
        from .runtime.engines import LlamaCppEngine

        engine = LlamaCppEngine(gguf_for(args.model), n_ctx=args.max_len)
        tokenize, scorer, name = engine.tokenize, engine.score, engine.path.name
    results = evaluate_languages(langs, lambda l: corpus.texts(l, "eval"), tokenize, scorer,
                                 max_tokens=args.max_tokens, max_len=args.max_len,
                                 label=f"perplexity ({args.engine})")
    t = Table(title=f"perplexity on the eval split — {name} ({args.engine})")
    for col in ("lang", "paragraphs", "tokens", "perplexity", "bits/byte"):
        t.add_column(col, justify="left" if col == "lang" else "right")
    for r in results:
        t.add_row(r.lang, str(r.n_texts), str(r.n_tokens), f"{r.ppl:.2f}", f"{r.bits_per_byte:.3f}")
    out.print(t)
    if args.json:
        _write_json_atomic(Path(args.json), {"model": name, "engine": args.engine,
                                            "results": [r.to_dict() for r in results]})
    return 0


# ------------------------------------------------------------------ parser

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="babel-edge",
        description="Profile which FFN experts of a multilingual LLM fire for which languages, "
                    "prune to a language set, export, serve and benchmark.")
    p.add_argument("--version", action="version", version=f"babel-edge {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    model_help = ("embedded model name (default gemma-3-270m), a .gguf file, "
                  "or a local Hugging Face model directory")

    s = sub.add_parser("models", help="what models can be loaded (embedded, supported architectures)",
                       description="List the embedded models and the supported architectures; "
                                   "with --model, describe one model without loading its weights.")
    s.add_argument("--model", help=model_help)
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("langs", help="corpus languages with family, script and size",
                       description="List the built-in corpus languages (or those of --corpus).")
    s.add_argument("--corpus", help="your own text: a folder of <lang>.txt files or a .jsonl file")
    s.set_defaults(func=cmd_langs)

    s = sub.add_parser("ppl", help="per-language perplexity on the evaluation split",
                       description="Per-language perplexity (and bits per byte) of a model on the "
                                   "corpus's evaluation split, which profiling never sees.")
    s.add_argument("--model", help=model_help)
    s.add_argument("--langs", help="comma-separated language codes (default: every corpus language)")
    s.add_argument("--corpus", help="your own text: a folder of <lang>.txt files or a .jsonl file")
    s.add_argument("--engine", choices=["torch", "llama.cpp"], default="torch",
                   help="torch: the fp32 reference; llama.cpp: the GGUF file itself "
                        "(needs --model to be a .gguf or the embedded model)")
    s.add_argument("--max-tokens", type=int, default=4096,
                   help="predicted tokens scored per language (default 4096)")
    s.add_argument("--max-len", type=int, default=512, help="longest sequence in tokens (default 512)")
    s.add_argument("--json", help="also write the results to this JSON file")
    s.set_defaults(func=cmd_ppl)

    # later stages register their own subcommands, in pipeline order
    from . import cli_export, cli_profile, cli_prune, cli_runtime
    cli_profile.register(sub)
    cli_prune.register(sub)
    cli_export.register(sub)
    cli_runtime.register(sub)

    s = sub.add_parser("tui", help="interactive wizard: choose languages and rate, build, export, bench",
                       description="A keyboard-first terminal wizard (Textual; the mouse works too) "
                                   "over the same library calls as 'build': model, languages, budget "
                                   "with a live estimate, export formats, the build with progress, "
                                   "and the results.")
    s.set_defaults(func=cmd_tui)
    return p


def cmd_tui(args) -> int:
    from .tui import make_app

    app = make_app()
    app.run()
    if app.current_cancel is not None:       # quit during a build
        print("babel-edge tui: waiting for the build to stop at its next checkpoint…", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    from .errors import user_error_types

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except user_error_types() as e:
        print(f"babel-edge {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("babel-edge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`babel-edge models` and `babel-edge langs`: what can be loaded, and what text there is."""
from __future__ import annotations

from rich.table import Table

from .common import CORPUS_HELP, out


def register(sub) -> None:
    s = sub.add_parser("models", help="what models can be loaded (embedded, supported architectures)",
                       description="List the embedded models and the supported architectures; "
                                   "with --model, describe one model without loading its weights.")
    s.add_argument("--model", help="embedded model name (default gemma-3-270m), a .gguf file, "
                                   "or a local Hugging Face model directory")
    s.set_defaults(func=run_models)

    s = sub.add_parser("langs", help="corpus languages with family, script and size",
                       description="List the built-in corpus languages (or those of --corpus).")
    s.add_argument("--corpus", help=CORPUS_HELP)
    s.set_defaults(func=run_langs)


def run_models(args) -> int:
    from ..models import DEFAULT_MODEL, EMBEDDED, cache_dir, describe_model
    from ..models.adapters import ADAPTERS
    from ..models.loader import is_prepared

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
        t.add_row(name + (" (default)" if name == DEFAULT_MODEL else ""), em.description,
                  "yes" if is_prepared(name) else "no (first use converts it, about a minute)")
    out.print(t)
    t = Table(title="architectures a local model directory or .gguf file may have")
    t.add_column("family")
    t.add_column("config model_type")
    for mt, ad in sorted(ADAPTERS.items(), key=lambda kv: kv[1].family):
        t.add_row(ad.family, mt)
    out.print(t)
    out.print(f"cache: {cache_dir()}  (set BABEL_EDGE_CACHE to move it)")
    return 0


def run_langs(args) -> int:
    from .common import load_corpus_arg

    corpus = load_corpus_arg(args.corpus)
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

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


def _k(n: int) -> str:
    """Thousands of characters, short: 250, 8.2, 0."""
    return "0" if not n else f"{n / 1000:.0f}" if n >= 9_950 else f"{n / 1000:.1f}"


def run_langs(args) -> int:
    from ..corpus import DOMAINS
    from .common import load_corpus_arg

    corpus = load_corpus_arg(args.corpus)
    stats = corpus.stats()
    domains = corpus.domains()
    from rich import box

    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=f"{corpus.origin} corpus: {len(stats)} languages, "
                    f"{len({s.family for s in stats})} families, {len(domains)} domains "
                    f"(sizes: thousands of characters, profile/eval)")
    t.add_column("tag", no_wrap=True)
    t.add_column("name", overflow="fold", min_width=13)
    t.add_column("family", no_wrap=True)
    t.add_column("script", no_wrap=True)
    t.add_column("total", justify="right", no_wrap=True)
    # one cell, so a narrow terminal wraps it instead of squeezing the other columns away
    t.add_column("domains", min_width=18, no_wrap=True)
    for s in sorted(stats, key=lambda s: (s.family, s.code)):
        # one domain per line on a narrow terminal, so no domain is split from its size
        per = ("  " if out.width >= 130 else "\n").join(
            f"{d} {_k(x.n_chars['profile'])}/{_k(x.n_chars['eval'])}" for d, x in s.domains.items())
        t.add_row(s.code, s.name, s.family, s.script,
                  f"{_k(s.n_chars['profile'])}/{_k(s.n_chars['eval'])}", per)
    out.print(t)
    for d in domains:
        info = DOMAINS.get(d)
        n = sum(d in s.domains for s in stats)
        what = f"{info.title} ({info.register}; {info.licence})" if info and info.register else \
            (info.title if info else "your own text")
        out.print(f"{d}: {what} — {n} language{'s' * (n != 1)}", highlight=False)
    if corpus.origin == "built-in":
        out.print("sources, licences and exact sizes: babel_edge/corpus/data/NOTICE.md; a bare tag "
                  "such as zh or pt reads what the corpus holds for it (zh-Hans, pt-BR)",
                  highlight=False)
    return 0

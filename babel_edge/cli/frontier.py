"""`babel-edge frontier`: which mix of FFN pruning, vocabulary trimming and quantization keeps
the target languages best for a size budget (babel_edge.frontier)."""
from __future__ import annotations

import argparse

DESCRIPTION = """\
Sweep FFN pruning rates x vocabulary sizes x GGUF precisions for a model and a set of target
languages; build and export every point with the library calls `build` uses (GGUF, parity-
checked); measure file size, bits per byte per target language on unseen-domain text (the
same bytes for every point), peak RSS, prefill and decode tokens/s in llama.cpp. Writes
frontier.json, frontier.md and frontier.png (bits per byte vs MB, one panel per language and
their mean, Pareto-optimal points marked) to --out. Interrupted sweeps continue where they
stopped; each point's files are deleted after measuring unless --keep.

With --max-mb (and/or --min-tok-s), prints the best point within that budget and the exact
`babel-edge build` command that makes it.

example: babel-edge frontier --langs en,de,fr --out frontier/ --max-mb 100
"""


def _floats(s: str) -> list[float]:
    return [float(x) for x in s.split(",") if x.strip()]


def _vocab(s: str) -> list[int | None]:
    out = []
    for x in s.split(","):
        x = x.strip().lower()
        if x:
            out.append(None if x in ("full", "none", "0") else int(x))
    return out


def register(sub) -> None:
    from .. import frontier as F
    from .common import MODEL_HELP

    s = sub.add_parser("frontier", help="the quality-size frontier of pruning x vocabulary x "
                                        "quantization for your languages",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--model", help=MODEL_HELP)
    s.add_argument("--langs", default="en,de,fr", help="target languages (default en,de,fr)")
    s.add_argument("--rates", default=",".join(f"{r:g}" for r in F.DEFAULT_RATES),
                   help=f"FFN pruning rates (default {','.join(f'{r:g}' for r in F.DEFAULT_RATES)})")
    s.add_argument("--vocab", default=",".join(str(v or "full") for v in F.DEFAULT_VOCAB),
                   help="kept vocabulary sizes; 'full' = untrimmed (default "
                        f"{','.join(str(v or 'full') for v in F.DEFAULT_VOCAB)})")
    s.add_argument("--quants", default=",".join(F.DEFAULT_QUANTS),
                   help=f"GGUF precisions (default {','.join(F.DEFAULT_QUANTS)})")
    s.add_argument("--heal", action="store_true",
                   help="also sweep healed models (every pruned body once more, healed)")
    s.add_argument("--rounds", type=int, default=2, help="speed rounds per point (default 2)")
    s.add_argument("--threads", type=int, help="llama.cpp threads (default: all cores)")
    s.add_argument("--max-bytes", type=int, default=12_000,
                   help="unseen-domain bytes scored per language (default 12,000)")
    s.add_argument("--max-mb", type=float, help="print the best point within this file size")
    s.add_argument("--min-tok-s", type=float, help="... and at least this decode speed")
    s.add_argument("--keep", action="store_true", help="keep every point's GGUF and pruned body")
    s.add_argument("--out", required=True, metavar="DIR", help="where frontier.json/.md/.png go")
    s.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from .. import frontier as F
    from ..corpus import load_corpus, parse_langs
    from ..errors import UserError
    from ..progress import count_progress
    from .common import out

    langs = parse_langs(args.langs, load_corpus())
    try:
        points = F.grid(_floats(args.rates), _vocab(args.vocab),
                        [q.strip() for q in args.quants.split(",") if q.strip()],
                        (False, True) if args.heal else (False,))
    except ValueError as e:
        raise UserError(f"cannot read the grid: {e}") from None
    if args.rounds < 1 or args.max_bytes < 100:
        raise UserError("--rounds must be at least 1 and --max-bytes at least 100")
    outdir = Path(args.out).expanduser()
    outdir.mkdir(parents=True, exist_ok=True)
    import shlex
    import sys

    sweep = F.Sweep(langs, args.model, points, outdir, outdir / "work", rounds=args.rounds,
                    threads=args.threads, max_bytes=args.max_bytes, keep=args.keep,
                    command="babel-edge " + shlex.join(sys.argv[1:]))
    with count_progress("frontier", len(points), "points") as advance:
        last = [0]

        def progress(done, total, what):
            advance(max(0, done - last[0]), extra=what)
            last[0] = done

        res = F.run_sweep(sweep, progress=progress)
    out.print(F.markdown(res))
    out.print(f"wrote {outdir / 'frontier.json'}, {outdir / 'frontier.md'}, {outdir / 'frontier.png'}")
    if args.max_mb is not None or args.min_tok_s is not None:
        b = F.best(res["points"], args.max_mb, args.min_tok_s)
        if b is None:
            out.print("no point fits that budget")
            return 1
        out.print(f"best within the budget: {F.Point(**b['point']).label()} — {b['file_mb']:.1f} MB, "
                  f"mean bits per byte {b['bpb_mean']:.3f}, decode {b['decode_tok_s']:.1f} tok/s")
        out.print(F.build_command(b, langs, args.model), markup=False, highlight=False)
    return 0

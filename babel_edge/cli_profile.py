"""`babel-edge profile` and `babel-edge report`: thin wrappers over profile.py and report/."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .profile import DEFAULT_MIN_TOKENS, DEFAULT_TOKENS_PER_LANG

PROFILE_DESCRIPTION = f"""\
Measure which FFN experts fire for which language.

Every FFN layer's neurons are split into experts of --experts-size neurons
(balanced k-means over the gate rows, as in MoEfication). Then the model reads
up to --tokens-per-lang tokens of each language's profile text, and for every
token records which experts are among the top --top-k-share of their layer by
activation mass (sum of |act(gate(x))*up(x)| over the expert's neurons), which
neurons fire (|a| above the layer's mean |a| on that token) and each neuron's
mean |a|. Only the decoder runs (no LM head); BOS and padding are not counted.

The result is one safetensors file with a JSON header (model fingerprint, expert
map, languages with token counts, the activation definition). Finished languages
are kept in FILE.partial/ so an interrupted run resumes where it stopped.
Languages with fewer than --tokens-per-lang tokens of text are profiled on all
they have (a note says so); fewer than --min-tokens (default {DEFAULT_MIN_TOKENS}) is refused.

example: babel-edge profile --langs en,de,fr,zh,ar,ru --out six.profile.safetensors
"""

REPORT_DESCRIPTION = """\
Turn a profile into figures and numbers: a layer x expert frequency heatmap per
language (same expert order in every panel) and a grid of all, shared experts
(high-frequency in all / most languages), language-specific experts (high in
some language, low in most others; with LAPE's entropy view), their counts per layer,
a language similarity matrix, a hierarchical clustering dendrogram, and how well
the clusters agree with the true language families — next to the same numbers for
a random expert split recorded in the same pass and for shuffled family labels.

Writes DIR/report.html (self-contained, images inlined), DIR/summary.json and
DIR/*.png.

example: babel-edge report six.profile.safetensors --out report/
"""


def _add_profile(sub) -> None:
    model_help = ("embedded model name (default gemma-3-270m), a .gguf file, "
                  "or a local Hugging Face model directory")
    s = sub.add_parser("profile", help="measure per-language expert activation frequencies",
                       description=PROFILE_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--model", help=model_help)
    s.add_argument("--langs", help="comma-separated language codes (default: every corpus language)")
    s.add_argument("--corpus", help="your own text: a folder of <lang>.txt files or a .jsonl file "
                                    "(default: the built-in corpus's profile split)")
    s.add_argument("--tokens-per-lang", type=int, default=DEFAULT_TOKENS_PER_LANG, metavar="N",
                   help=f"text tokens read per language (default {DEFAULT_TOKENS_PER_LANG})")
    s.add_argument("--min-tokens", type=int, default=DEFAULT_MIN_TOKENS, metavar="N",
                   help=f"refuse a language with less text than this (default {DEFAULT_MIN_TOKENS})")
    s.add_argument("--experts-size", type=int, default=32, metavar="NEURONS",
                   help="neurons per expert; must divide the FFN width (default 32 -> 64 experts "
                        "per layer on Gemma 3 270M)")
    s.add_argument("--split", choices=["kmeans", "coactivation", "random"], default="kmeans",
                   help="how neurons are grouped: kmeans over gate rows (default), coactivation "
                        "(neurons that fire together on the profile text), random (baseline)")
    s.add_argument("--top-k-share", type=float, default=0.25, metavar="SHARE",
                   help="an expert is active on a token when it is among the top SHARE of its "
                        "layer's experts by activation mass (default 0.25)")
    s.add_argument("--batch-size", type=int, default=32, help="sequences per forward pass (default 32)")
    s.add_argument("--max-len", type=int, default=256,
                   help="longest sequence in tokens; longer paragraphs are cut into pieces (default 256)")
    s.add_argument("--seed", type=int, default=0, help="seed of the expert split (default 0)")
    s.add_argument("--out", required=True, metavar="FILE", help="profile file to write (.safetensors)")
    s.set_defaults(func=cmd_profile)


def _add_report(sub) -> None:
    s = sub.add_parser("report", help="heatmaps, shared/specific experts and language families "
                                      "from a profile",
                       description=REPORT_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("profile", metavar="PROFILE", help="a file written by 'babel-edge profile'")
    s.add_argument("--out", required=True, metavar="DIR", help="folder for the report")
    s.add_argument("--high", type=float, default=None, metavar="FREQ",
                   help="frequency from which an expert counts as high-frequency for a language "
                        "(default: twice the top-k share, i.e. 0.5)")
    s.add_argument("--low", type=float, default=None, metavar="FREQ",
                   help="frequency up to which an expert counts as low for a language "
                        "(default: half the top-k share, i.e. 0.125)")
    s.add_argument("--most", type=float, default=0.75, metavar="SHARE",
                   help="'shared by most' = high in at least this share of languages; "
                        "'specific' = high in some, low in at least this share of the others "
                        "(default 0.75)")
    s.set_defaults(func=cmd_report)


def register(sub) -> None:
    """Add the `profile` and `report` subcommands to babel-edge's subparsers."""
    _add_profile(sub)
    _add_report(sub)


def _note(msg: str) -> None:
    print(f"note: {msg}", file=sys.stderr)


def cmd_profile(args) -> int:
    from .corpus import load_corpus, load_user_corpus, parse_langs
    from .errors import UserError
    from .models import load_model
    from .profile import partial_dir_for, profile_model, remove_partial, save_profile

    out = Path(args.out)
    if out.is_dir():
        raise UserError(f"--out '{out}' is a directory; give a file name such as "
                        f"{out / 'model.profile.safetensors'}")
    corpus = load_user_corpus(args.corpus) if args.corpus else load_corpus()
    langs = parse_langs(args.langs) if args.langs else corpus.languages()
    for lang in langs:
        corpus.texts(lang, "profile")        # fail on a language the corpus lacks before loading
    lm = load_model(args.model)
    part = partial_dir_for(out)
    profile = profile_model(
        lm, langs, lambda lang: corpus.texts(lang, "profile"),
        tokens_per_lang=args.tokens_per_lang, min_tokens=args.min_tokens,
        expert_size=args.experts_size, split=args.split, top_k_share=args.top_k_share,
        batch_size=args.batch_size, max_len=args.max_len, seed=args.seed,
        corpus=getattr(corpus, "origin", args.corpus or "built-in"), partial_dir=part,
        language_extra={st.code: {"source": st.source} for st in corpus.stats()}, warn=_note)
    save_profile(profile, out)
    remove_partial(part)
    run = profile.header["run"]
    secs, done = run["seconds_recording"], run["tokens_recorded"]
    resumed = run["languages_resumed"]
    print(f"profiled {len(langs)} languages ({int(profile.tokens.sum()):,} tokens"
          + (f"; {len(resumed)} resumed from an earlier run" if resumed else "")
          + f"): recorded {done:,} tokens in {secs:.0f} s ({done / max(secs, 1e-9):,.0f} tok/s); "
          f"{profile.expert_map.n_experts(0)} experts x {profile.n_layers} layers "
          f"({profile.expert_map.method} split) -> {out}")
    return 0


def cmd_report(args) -> int:
    from .profile import load_profile
    from .report import write_report

    profile = load_profile(args.profile)
    summary = write_report(profile, args.out, high=args.high, low=args.low, most=args.most)
    print(f"report: {Path(args.out) / 'report.html'}")
    fa = summary["family_agreement"].get("family")
    if fa:
        print("family agreement (nearest neighbour in the same family / adjusted Rand index): "
              + ", ".join(f"{name} {fa[name]['nn_same']:.2f} / {fa[name]['ari']:.2f}"
                          for name in ("experts", "random_split", "neurons", "shuffled")))
    pl = summary["per_layer"]
    print(f"experts shared by all languages per layer: {pl['shared_all']}")
    print(f"language-specific experts per layer:       {pl['specific']}")
    return 0

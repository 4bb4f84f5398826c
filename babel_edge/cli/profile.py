"""`babel-edge profile`: per-language expert activation frequencies (babel_edge.profile)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..profile import DEFAULT_MIN_TOKENS, DEFAULT_TOKENS_PER_LANG
from .common import CORPUS_HELP, LANGS_HELP, MODEL_HELP, add_nproc, note

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

def register(sub) -> None:
    s = sub.add_parser("profile", help="measure per-language expert activation frequencies",
                       description=PROFILE_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--model", help=MODEL_HELP)
    s.add_argument("--langs", help=LANGS_HELP)
    s.add_argument("--corpus", help=CORPUS_HELP + " (default: the built-in corpus's profile split)")
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
    from ..models.loader import DTYPES

    s.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="weights' type while profiling (default float32; bfloat16 halves the "
                        "memory of a big model, and counts move a little: the header records it)")
    s.add_argument("--device-map", metavar="auto",
                   help="spread a model that one device cannot hold over the GPUs, then the CPU "
                        "(accelerate's device_map: 'auto', 'balanced', 'sequential')")
    s.add_argument("--out", required=True, metavar="FILE", help="profile file to write (.safetensors)")
    s.add_argument("--exclude-domain", action="append", metavar="DOMAIN",
                   help="corpus domain not to read (repeatable; default: the domain evaluation "
                        "holds out as unseen for these languages; --exclude-domain '' reads all)")
    add_nproc(s)
    s.set_defaults(func=run)


def run(args) -> int:
    from ..corpus import parse_langs
    from ..errors import UserError
    from ..models import load_model
    from ..profile import partial_dir_for, profile_model, remove_partial, save_profile
    from ..profile.run import check_settings
    from .common import load_corpus_arg

    out = Path(args.out)
    if out.is_dir():
        raise UserError(f"--out '{out}' is a directory; give a file name such as "
                        f"{out / 'model.profile.safetensors'}")
    if not out.parent.is_dir():
        raise UserError(f"--out '{out}': folder '{out.parent}' does not exist; create it first")
    langs = parse_langs(args.langs) if args.langs else None
    corpus = load_corpus_arg(args.corpus, langs)
    # the corpus's own tags ("zh" -> "zh-Hans"); a language the corpus lacks fails here
    langs = parse_langs(langs, corpus) if langs else corpus.languages()
    check_settings(langs, args.tokens_per_lang, args.min_tokens, args.top_k_share,
                   args.batch_size, args.max_len, args.split)   # all before the model loads
    if args.experts_size < 1:
        raise UserError(f"--experts-size must be a positive number of neurons, not {args.experts_size}")
    if args.exclude_domain is not None:
        excluded = tuple(d for d in args.exclude_domain if d)
    else:          # the domain these languages' evaluation holds out (as prune/eval choose it)
        unseen = corpus.unseen_domain(langs) if hasattr(corpus, "unseen_domain") else None
        excluded = (unseen,) if unseen else ()
    if args.device_map is not None and args.device_map not in ("auto", "balanced", "sequential"):
        raise UserError(f"--device-map '{args.device_map}': use auto, balanced or sequential")
    lm = load_model(args.model, dtype=args.dtype, device_map=args.device_map)
    part = partial_dir_for(out)
    profile = profile_model(
        lm, langs, lambda lang: corpus.texts(lang, "profile", exclude=excluded),
        tokens_per_lang=args.tokens_per_lang, min_tokens=args.min_tokens,
        expert_size=args.experts_size, split=args.split, top_k_share=args.top_k_share,
        batch_size=args.batch_size, max_len=args.max_len, seed=args.seed,
        corpus=getattr(corpus, "origin", args.corpus or "built-in"), partial_dir=part,
        language_extra={st.code: {"source": st.source} for st in corpus.stats()}, warn=note)
    from .. import distributed as dd

    profile.header["run"]["domains_excluded"] = list(excluded)
    profile.header["run"]["dtype"] = args.dtype
    if args.device_map is not None:
        profile.header["run"]["device_map"] = sorted({str(d) for d in lm.model.hf_device_map.values()})
    if not dd.is_main():                      # rank 0 writes the one file
        return 0
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



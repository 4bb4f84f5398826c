"""`babel-edge prune`: remove the FFN neurons (and tokens) the target languages do not use."""
from __future__ import annotations

import argparse

from rich.table import Table

from .common import CORPUS_HELP, MODEL_HELP, add_nproc, out
from .heal import HealBars, add_heal_options, heal_options


def add_prune_options(s, defaults=None) -> None:
    """The options of a pruning run (PruneOptions), shared by `prune` and `build`."""
    from ..prune.options import GRANULARITIES, RIDGE_GRID, SCHEDULES, STRATEGIES, PruneOptions

    d = defaults or PruneOptions()
    s.add_argument("--strategy", choices=STRATEGIES, default=d.strategy,
                   help="mass: mean |activation| on the targets x down-projection column norm "
                        "(default); frequency: how often neurons/experts fire on the targets; "
                        "magnitude: language-blind weight norms; random: seeded baseline")
    s.add_argument("--schedule", choices=SCHEDULES, default=None,
                   help=f"search: per-layer widths found by an evolutionary search that minimises "
                        f"the next-token KL to the dense model on calibration text (2-3 minutes "
                        f"on a 270M model; cached); adaptive: per-layer rates from how spread the "
                        f"targets' expert activations are in each layer; uniform: same rate "
                        f"everywhere (default {d.schedule}; with --stream, adaptive)")
    s.add_argument("--granularity", choices=GRANULARITIES, default=d.granularity,
                   help="keep single neurons (default) or whole experts of the profile's expert map")
    s.add_argument("--compensate", action=argparse.BooleanOptionalAction, default=d.compensate,
                   help="refit the kept down-projection columns by least squares on target-language "
                        "calibration text (default on; --no-compensate for the ablation)")
    s.add_argument("--calib-tokens", type=int, default=d.calib_tokens,
                   help=f"calibration tokens (profile split of the targets, split equally; default "
                        f"{d.calib_tokens}; cached)")
    s.add_argument("--ridge", type=_ridge, default=d.ridge, metavar="auto|FLOAT",
                   help="ridge of the least-squares refit, relative to the kept neurons' mean "
                        "squared activation; auto (default): chosen per layer from "
                        f"{', '.join(f'{r:g}' for r in RIDGE_GRID)} on a fitting domain held out of "
                        "the fit")
    s.add_argument("--multiple-of", type=int, default=d.multiple_of,
                   help=f"round every layer's width to a multiple of this (default {d.multiple_of}; "
                        f"256 for K-quants)")
    s.add_argument("--min-keep", type=float, default=d.min_keep,
                   help=f"no layer keeps less than this share of its width (default {d.min_keep})")
    s.add_argument("--alpha", type=float, default=d.alpha,
                   help=f"strength of the adaptive schedule (0 = uniform; default {d.alpha:g})")
    s.add_argument("--seed", type=int, default=d.seed, help="seed of the random strategy (default 0)")
    s.add_argument("--trim-vocab", action="store_true", default=d.trim_vocab,
                   help="also trim the vocabulary to the target languages: keep the tokens they "
                        "need (--vocab-evidence), the merge pieces that build them, every "
                        "byte-fallback/byte, special and chat-template token, every letter-free "
                        "token of no particular script and every character of their scripts; the "
                        "embedding, the tokenizer, GGUF and ONNX exports all shrink")
    s.add_argument("--vocab-text", action="append", metavar="FILE",
                   help="UTF-8 text of your own (repeatable) whose tokens count as evidence of "
                        "every target language: give it when your text's register (product "
                        "names, technical terms) is far from everyday language")
    s.add_argument("--vocab-size", type=int, metavar="N", default=d.vocab_size,
                   help="keep N tokens in all: the ones the target languages need most "
                        "(default: every token with evidence)")
    s.add_argument("--vocab-evidence", choices=("language", "text"), default=d.vocab_evidence,
                   help="language (default): rank tokens by wordfreq word frequencies and the "
                        "fitting text, and keep every letter-free token of no particular script and "
                        "every character of the target scripts; text: only the tokens of the "
                        "fitting text")
    s.add_argument("--heal", action="store_true", default=d.heal is not None,
                   help="heal the cut model against the dense one before trimming (block "
                        "reconstruction of every kept FFN; see 'babel-edge heal --help')")
    add_heal_options(s, d.heal)


def _ridge(text: str) -> float | None:
    if text.strip().lower() == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not auto or a number (e.g. 0.001)") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"the ridge must be positive, not {text}")
    return value


def prune_options(args):
    """PruneOptions from parsed arguments (validated). The schedule not given: the default,
    or adaptive under --stream (the search runs the model)."""
    from ..prune.options import PruneOptions, as_paths

    schedule = args.schedule or ("adaptive" if getattr(args, "stream", False)
                                 else PruneOptions().schedule)
    return PruneOptions(strategy=args.strategy, schedule=schedule,
                        granularity=args.granularity, compensate=args.compensate,
                        multiple_of=args.multiple_of, min_keep=args.min_keep, alpha=args.alpha,
                        seed=args.seed, calib_tokens=args.calib_tokens, ridge=args.ridge,
                        trim_vocab=args.trim_vocab,
                        vocab_text=as_paths(args.vocab_text), vocab_size=args.vocab_size,
                        vocab_evidence=args.vocab_evidence,
                        heal=heal_options(args) if args.heal else None,
                        heal_text=as_paths(args.heal_text)).validate()


def register(sub) -> None:
    from ..prune.options import MASSIVE_RATIO

    s = sub.add_parser(
        "prune", help="remove the FFN neurons the target languages do not use",
        description="Prune a model's FFN neurons for a set of target languages and save a smaller "
                    "Hugging Face-style model directory (per-layer widths, tokenizer, "
                    "pruning_plan.json with the kept neuron ids and provenance). Gate/up rows and "
                    "down columns are physically removed, so parameters and file size shrink. "
                    f"Neurons with massive activations (mean |a| >= {MASSIVE_RATIO:g}x their "
                    "layer's median) are kept by every strategy but random. Every option, the "
                    "profile and the output path are checked before the model loads.")
    s.add_argument("--model", help=MODEL_HELP)
    s.add_argument("--profile", help="profile file from 'babel-edge profile' of the same model "
                                     "(needed by mass/frequency, the adaptive schedule and experts)")
    s.add_argument("--langs", required=True, help="target languages, comma-separated (e.g. en,de,fr); "
                                                  "each weighs equally")
    s.add_argument("--rate", type=float, required=True,
                   help="share of FFN parameters to remove over the whole model, in (0, 1)")
    add_prune_options(s)
    s.add_argument("--corpus", help=CORPUS_HELP + " (calibration and vocabulary text)")
    s.add_argument("--stream", action="store_true",
                   help="for a model bigger than memory: never load it; read and write its "
                        "safetensors tensor by tensor (peak memory ~ the largest tensor). Needs "
                        "--no-compensate; no --trim-vocab, --heal or --schedule search (the schedule "
                        "defaults to adaptive). Export "
                        "the result with 'babel-edge export --stream'")
    s.add_argument("--out", required=True, help="output directory (replaced if it holds an earlier pruned model)")
    add_nproc(s)
    s.set_defaults(func=run)


def run(args) -> int:
    from ..corpus import parse_langs
    from ..prune import prune

    if args.stream:
        from ..prune.stream import prune_large

        path, plan = prune_large(args.model, args.profile, parse_langs(args.langs), args.rate,
                                 args.out, prune_options(args))
        print_plan(plan)
        out.print(f"saved {path}  (streamed; export with 'babel-edge export --stream --model {path}')")
        return 0
    bars = HealBars()
    try:
        path, plan = prune(args.model, args.profile, parse_langs(args.langs), args.rate, args.out,
                           corpus=args.corpus, options=prune_options(args), heal_progress=bars)
    finally:
        bars.close()
    from .. import distributed as dd

    if not dd.is_main():
        return 0
    print_plan(plan)
    out.print(f"saved {path}  (load with babel_edge.load_pruned; score with "
              f"'babel-edge eval --model {path}')")
    return 0


def print_plan(plan) -> None:
    t = Table(title=f"pruned for {', '.join(plan.target_langs)} — {plan.strategy}, "
                    f"{plan.schedule} schedule, {plan.granularity}s, compensation "
                    f"{'on' if plan.compensation.get('on') else 'off'}")
    comp = plan.compensation or {}
    ridges = comp.get("ridge") if comp.get("on") else None
    per_layer = isinstance(ridges, list) and len(ridges) == len(plan.layers)
    for col in ("layer", "width", "removed", "protected (massive)") + (("ridge",) if per_layer else ()):
        t.add_column(col, justify="right")
    for layer in plan.layers:
        cells = [str(layer.layer), f"{layer.width} / {layer.width_before}",
                 f"{layer.rate:.0%}", str(len(layer.massive))]
        if per_layer:        # a layer that keeps every neuron is not refit
            cells.append(f"{ridges[layer.layer]:g}" if layer.width < layer.width_before else "")
        t.add_row(*cells)
    out.print(t)
    if ridges is not None:
        choice = comp.get("ridge_choice") or {}
        held = choice.get("held_out_domains")
        if held:
            out.print("compensation ridge: chosen per layer on a held-out fitting domain ("
                      + ", ".join(f"{l}: {d}" for l, d in held.items()) + ")",
                      markup=False, highlight=False)
        elif not per_layer:
            out.print(f"compensation ridge: {ridges:g} ({choice.get('rule', 'given')})",
                      markup=False, highlight=False)
    p = plan.params
    out.print(f"FFN parameters {p['ffn_before']:,} -> {p['ffn_after']:,} "
              f"(rate {plan.realized_rate:.3f}, asked {plan.rate}); all parameters "
              f"{p['total_before']:,} -> {p['total_after']:,}")
    if plan.healing:
        from ..heal.run import summary_lines

        for line in summary_lines(plan.healing):
            out.print(line, markup=False, highlight=False)
    if plan.vocab:
        from ..vocab import format_section

        for line in format_section(plan.vocab):
            out.print(line, markup=False, highlight=False)

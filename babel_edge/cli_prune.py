"""`babel-edge prune` and `babel-edge eval`: argparse glue over babel_edge.prune / prune_eval.

Each command parses nothing itself: it calls the library function with the
same meaning and prints a table. Bad input raises UserError (one line, exit 2).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

out = Console()

MODEL_HELP = ("embedded model name (default gemma-3-270m), a .gguf file, or a local Hugging Face "
              "model directory")


def _write_json_atomic(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    os.replace(tmp, path)


# ------------------------------------------------------------------ prune

def cmd_prune(args) -> int:
    from .corpus import parse_langs
    from .errors import UserError
    from .prune import prune

    if args.strategy in ("mass", "frequency") or args.schedule == "adaptive" or args.granularity == "expert":
        if not args.profile:
            raise UserError(f"--profile is needed for --strategy {args.strategy}, --schedule "
                            f"{args.schedule} and --granularity {args.granularity}; create one "
                            f"with 'babel-edge profile' (or use --strategy magnitude|random "
                            f"--schedule uniform)")
    schedule = args.schedule
    path, plan = prune(args.model, args.profile, parse_langs(args.langs), args.rate, args.out,
                       corpus=args.corpus, strategy=args.strategy, schedule=schedule,
                       granularity=args.granularity, compensate=args.compensate,
                       multiple_of=args.multiple_of, min_keep=args.min_keep, alpha=args.alpha,
                       seed=args.seed, calib_tokens=args.calib_tokens,
                       trim_vocab=args.trim_vocab, vocab_text=args.vocab_text)
    t = Table(title=f"pruned for {', '.join(plan['target_langs'])} — {plan['strategy']}, "
                    f"{plan['schedule']} schedule, {plan['granularity']}s, compensation "
                    f"{'on' if plan['compensation']['on'] else 'off'}")
    for col in ("layer", "width", "removed", "protected (massive)"):
        t.add_column(col, justify="right")
    for layer in plan["layers"]:
        t.add_row(str(layer["layer"]), f"{layer['width']} / {layer['width_before']}",
                  f"{layer['rate']:.0%}", str(len(layer["massive"])))
    out.print(t)
    p = plan["params"]
    out.print(f"FFN parameters {p['ffn_before']:,} -> {p['ffn_after']:,} "
              f"(rate {plan['realized_rate']:.3f}, asked {plan['rate']}); all parameters "
              f"{p['total_before']:,} -> {p['total_after']:,}")
    if plan.get("vocab"):
        from .vocab import format_section

        for line in format_section(plan["vocab"]):
            out.print(line, markup=False, highlight=False)
    out.print(f"saved {path}  (load with babel_edge.load_pruned; score with "
              f"'babel-edge eval --model {path}')")
    return 0


# ------------------------------------------------------------------ eval

def cmd_eval(args) -> int:
    from .prune_eval import evaluate_model

    rep = evaluate_model(args.model, args.langs, args.corpus, args.max_tokens, args.max_len)
    name = Path(rep["model"]).name
    t = Table(title=f"perplexity on the eval split — {name}")
    for col in ("lang", "target", "tokens", "perplexity", "bits/byte"):
        t.add_column(col, justify="left" if col in ("lang", "target") else "right")
    for r in sorted(rep["results"], key=lambda r: (not r["target"], r["lang"])):
        t.add_row(r["lang"], "yes" if r["target"] else "", str(r["n_tokens"]), f"{r['ppl']:.2f}",
                  f"{r['bits_per_byte']:.3f}")
    out.print(t)
    s = rep["summary"]
    if s["target_ppl_gmean"] is not None:
        out.print(f"targets ({', '.join(rep['target_langs'])}): geometric-mean perplexity "
                  f"{s['target_ppl_gmean']:.2f}; other languages: {s['other_ppl_gmean'] or float('nan'):.2f}")
    out.print(f"parameters {rep['params']['total']:,} (FFN {rep['params']['ffn']:,}); weight files "
              f"{rep['file_bytes'] / 1e6:,.1f} MB")
    dest = Path(args.json) if args.json else _default_json(rep["model"], args.model)
    _write_json_atomic(dest, rep)
    out.print(f"saved {dest}")
    return 0


def _default_json(model_dir: str, spec: str | None) -> Path:
    """Next to a directory the user gave (e.g. a pruned model); else in the working directory."""
    d = Path(model_dir)
    if spec and Path(spec).expanduser().is_dir() and os.access(d, os.W_OK):
        return d / "eval.json"
    return Path(f"eval-{d.name}.json")


# ------------------------------------------------------------------ parser

def register(sub) -> None:
    from .prune import GRANULARITIES, SCHEDULES, STRATEGIES
    from .prune_calib import MASSIVE_RATIO

    s = sub.add_parser(
        "prune", help="remove the FFN neurons the target languages do not use",
        description="Prune a model's FFN neurons for a set of target languages and save a smaller "
                    "Hugging Face-style model directory (per-layer widths, tokenizer, "
                    "pruning_plan.json with the kept neuron ids and provenance). Gate/up rows and "
                    "down columns are physically removed, so parameters and file size shrink. "
                    f"Neurons with massive activations (mean |a| >= {MASSIVE_RATIO:g}x their "
                    "layer's median) are kept by every strategy but random.")
    s.add_argument("--model", help=MODEL_HELP)
    s.add_argument("--profile", help="profile file from 'babel-edge profile' of the same model "
                                     "(needed by mass/frequency, the adaptive schedule and experts)")
    s.add_argument("--langs", required=True, help="target languages, comma-separated (e.g. en,de,fr); "
                                                  "each weighs equally")
    s.add_argument("--rate", type=float, required=True,
                   help="share of FFN parameters to remove over the whole model, in (0, 1)")
    s.add_argument("--strategy", choices=STRATEGIES, default="mass",
                   help="mass: mean |activation| on the targets x down-projection column norm "
                        "(default); frequency: how often neurons/experts fire on the targets; "
                        "magnitude: language-blind weight norms; random: seeded baseline")
    s.add_argument("--schedule", choices=SCHEDULES, default="adaptive",
                   help="adaptive: per-layer rates from how spread the targets' expert activations "
                        "are in each layer (formula in pruning_plan.json); uniform: same rate everywhere")
    s.add_argument("--granularity", choices=GRANULARITIES, default="neuron",
                   help="keep single neurons (default) or whole experts of the profile's expert map")
    s.add_argument("--compensate", action=argparse.BooleanOptionalAction, default=True,
                   help="refit the kept down-projection columns by least squares on target-language "
                        "calibration text (default on; --no-compensate for the ablation)")
    s.add_argument("--calib-tokens", type=int, default=16384,
                   help="calibration tokens (profile split of the targets, split equally; default 16384; "
                        "cached)")
    s.add_argument("--multiple-of", type=int, default=32,
                   help="round every layer's width to a multiple of this (default 32; 256 for K-quants)")
    s.add_argument("--min-keep", type=float, default=0.1,
                   help="no layer keeps less than this share of its width (default 0.1)")
    s.add_argument("--alpha", type=float, default=1.0,
                   help="strength of the adaptive schedule (0 = uniform; default 1)")
    s.add_argument("--seed", type=int, default=0, help="seed of the random strategy (default 0)")
    s.add_argument("--corpus", help="your own text for calibration: a folder of <lang>.txt files or a .jsonl file")
    s.add_argument("--trim-vocab", action="store_true",
                   help="also trim the vocabulary to the target languages: keep the tokens their "
                        "text (profile split, plus --vocab-text) produces, the merge pieces that "
                        "build them, all byte-fallback/byte, special and chat-template tokens; the "
                        "embedding, the tokenizer, GGUF and ONNX exports all shrink")
    s.add_argument("--vocab-text", action="append", metavar="FILE",
                   help="UTF-8 text whose tokens --trim-vocab keeps too (repeatable)")
    s.add_argument("--out", required=True, help="output directory (replaced if it holds an earlier pruned model)")
    s.set_defaults(func=cmd_prune)

    s = sub.add_parser(
        "eval", help="per-language perplexity, parameters and size of a (pruned) model",
        description="Score a model on the corpus's evaluation split (never the profile split) for "
                    "every corpus language — the target languages of a pruned model and all the "
                    "others — and report parameter counts and weight-file size. Results are printed "
                    "and saved as JSON (default: eval.json inside a model directory you gave, else "
                    "eval-<name>.json here).")
    s.add_argument("--model", help=MODEL_HELP + " (e.g. a directory written by 'babel-edge prune')")
    s.add_argument("--langs", help="comma-separated language codes (default: every corpus language)")
    s.add_argument("--corpus", help="your own text: a folder of <lang>.txt files or a .jsonl file")
    s.add_argument("--max-tokens", type=int, default=2048,
                   help="predicted tokens scored per language (default 2048)")
    s.add_argument("--max-len", type=int, default=512, help="longest sequence in tokens (default 512)")
    s.add_argument("--json", help="where to save the results (JSON)")
    s.set_defaults(func=cmd_eval)


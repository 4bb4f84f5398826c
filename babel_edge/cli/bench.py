"""`babel-edge bench`: dense vs pruned artefacts side by side (babel_edge.runtime.bench)."""
from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    from ..evaluate import DEFAULT_MAX_BYTES, DEFAULT_OTHER_LANGS

    s = sub.add_parser(
        "bench", help="benchmark dense vs pruned: size, memory, prefill/decode speed, bits per byte",
        description="Measure dense and pruned artefacts side by side in one run, alternating round "
                    "by round, each run in a fresh process: file size, load time, peak RSS, prefill "
                    "tokens/s (128- and 512-token prompts), decode tokens/s (128 tokens), and "
                    "per-language bits per byte and perplexity on byte-identical text for every "
                    "artefact: first the unseen domain (the corpus domain held out of profiling, "
                    "calibration, vocabulary choice and healing for --targets), then the in-domain "
                    "eval split. Prints the measured decode speedup next to the ideal "
                    "one (weight bytes read per token, dense / pruned).")
    s.add_argument("--dense", nargs="+", metavar="PATH", help="dense artefacts (.gguf, ONNX dir, model dir)")
    s.add_argument("--pruned", nargs="+", metavar="PATH", help="pruned artefacts, same kinds")
    s.add_argument("--targets", help="target languages, marked in the table (e.g. en,de,fr)")
    s.add_argument("--other-langs",
                   help=f"non-target languages to score (default {','.join(DEFAULT_OTHER_LANGS)})")
    s.add_argument("--no-ppl", action="store_true", help="skip bits per byte and perplexity")
    s.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                   help=f"UTF-8 bytes scored per language (default {DEFAULT_MAX_BYTES:,}, as eval)")
    s.add_argument("--rounds", type=int, default=3, help="measurement rounds per artefact (default 3)")
    s.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    s.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    s.add_argument("--out", help="directory for bench.json, bench.md and bench.png")
    s.set_defaults(func=run)


def run(args) -> int:
    from rich.console import Console

    from ..corpus import load_corpus, parse_langs
    from ..errors import UserError
    from ..evaluate import DEFAULT_OTHER_LANGS
    from ..progress import count_progress
    from ..runtime.bench import Subject, run_bench, write_results
    from ..runtime.engines import check_device, detect_backend

    subjects = []
    for label, paths in (("dense", args.dense or []), ("pruned", args.pruned or [])):
        for p in paths:
            if not Path(p).exists():
                raise UserError(f"{label} artefact '{p}' not found; give a .gguf file, an ONNX export "
                                f"directory or a model directory")
            subjects.append(Subject(label, str(p), detect_backend(p)))
    if not subjects:
        raise UserError("nothing to benchmark: give --dense and/or --pruned artefacts")
    if args.rounds < 1:
        raise UserError("--rounds must be at least 1")
    for b in {s.backend for s in subjects}:
        check_device(b, args.device)
    # dense first within each engine: comparisons use it as the baseline
    subjects.sort(key=lambda s: (s.backend, s.label != "dense"))
    # the corpus's own tags ("zh" -> "zh-Hans"): a language without eval text fails here,
    # before any run
    corpus = None if args.no_ppl else load_corpus()
    targets = parse_langs(args.targets, corpus) if args.targets else []
    others = parse_langs(args.other_langs or DEFAULT_OTHER_LANGS, corpus)
    others = [l for l in others if l not in targets]
    ppl_langs = [] if args.no_ppl else targets + others
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out '{args.out}' is a file; give a directory for bench.json, "
                        f"bench.md and bench.png")
    steps = args.rounds * len(subjects) + (len(subjects) if ppl_langs else 0)
    with count_progress("benchmark", steps, "runs") as advance:
        res = run_bench(subjects, args.device, args.rounds, args.threads, ppl_langs, args.max_bytes,
                        progress=lambda done, total, what: advance(1, extra=what), targets=targets)
    res["targets"] = targets
    from ..runtime.bench import markdown

    Console().print(markdown(res, targets))
    if args.out:
        paths = write_results(res, Path(args.out), targets)
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0

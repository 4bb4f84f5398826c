"""CLI for the runtime stage: `serve` (and the benchmark)."""
from __future__ import annotations

import sys


def _engine_args(s, what: str) -> None:
    s.add_argument("model", nargs="?", default=None,
                   help=f"{what}: a .gguf file (llama.cpp), an ONNX export directory (onnxruntime), "
                        "or a model directory / embedded model name (PyTorch); default: the embedded model")
    s.add_argument("--engine", choices=["torch", "llama.cpp", "onnxruntime"],
                   help="back end (default: chosen from what MODEL is)")
    s.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cpu (default) or cuda; cuda fails clearly when the back end has no GPU here")
    s.add_argument("--n-ctx", type=int, default=2048, help="context length in tokens (default 2048)")
    s.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")


def cmd_serve(args) -> int:
    from .progress import status
    from .runtime.engines import open_engine
    from .runtime.server import ApiServer

    with status(f"loading {args.model or 'the embedded model'}"):
        engine = open_engine(args.model, args.engine, args.device, args.n_ctx, args.threads)
    try:
        server = ApiServer(engine, args.host, args.port, model_id=args.model_id,
                           max_queue=args.max_queue, verbose=args.verbose)
    except OSError as e:
        from .errors import UserError
        raise UserError(f"cannot listen on {args.host}:{args.port}: {e.strerror}; choose another --port")
    print(f"serving '{server.model_id}' ({engine.backend}, {engine.device}) at {server.url}/v1 "
          f"— Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        engine.close()
    return 0


DEFAULT_OTHER_LANGS = ("ru", "zh", "ar", "ja", "hi", "sw")


def cmd_bench(args) -> int:
    import json
    import os
    from pathlib import Path

    from rich.console import Console

    from .corpus import parse_langs
    from .errors import UserError
    from .progress import count_progress
    from .runtime.bench import Subject, chart, markdown, run_bench
    from .runtime.engines import check_device, detect_backend

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
    targets = parse_langs(args.targets) if args.targets else []
    others = parse_langs(args.other_langs) if args.other_langs else [
        l for l in DEFAULT_OTHER_LANGS if l not in targets]
    ppl_langs = [] if args.no_ppl else targets + others
    steps = args.rounds * len(subjects) + (len(subjects) if ppl_langs else 0)
    with count_progress("benchmark", steps, "runs") as advance:
        res = run_bench(subjects, args.device, args.rounds, args.threads, ppl_langs, args.ppl_tokens,
                        progress=lambda done, total, what: advance(1, extra=what))
    res["targets"] = targets
    md = markdown(res, targets)
    Console().print(md)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name, text in (("bench.json", json.dumps(res, indent=2)), ("bench.md", md)):
            tmp = out / f".{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, out / name)
        chart(res, out / "bench.png")
        print(f"wrote {out / 'bench.json'}, {out / 'bench.md'}, {out / 'bench.png'}")
    return 0


class _StepBars:
    """One rich bar per stage over the steps `build` reports (exports, benchmark runs)."""

    def __init__(self):
        self.stage, self.cm, self.advance, self.done = None, None, None, 0

    def __call__(self, stage: str, done: int, total: int, what: str) -> None:
        from .progress import count_progress

        if stage != self.stage:
            self.close()
            self.stage, self.done = stage, 0
            self.cm = count_progress(stage, total, "steps")
            self.advance = self.cm.__enter__()
        self.advance(done - self.done, extra=what)
        self.done = done

    def close(self) -> None:
        if self.cm is not None:
            self.cm.__exit__(None, None, None)
        self.stage, self.cm = None, None


def cmd_build(args) -> int:
    from rich.console import Console

    from .corpus import parse_langs
    from .pipeline import BuildOptions, build
    from .progress import console

    opts = BuildOptions(langs=parse_langs(args.langs), rate=args.rate, model=args.model,
                        gguf_quant=None if args.gguf == "none" else args.gguf,
                        onnx_precision=None if args.onnx == "none" else args.onnx,
                        tokens_per_lang=args.tokens_per_lang, strategy=args.strategy,
                        schedule=args.schedule, granularity=args.granularity,
                        compensate=not args.no_compensate, trim_vocab=args.trim_vocab,
                        bench_rounds=args.rounds,
                        bench=not args.no_bench, force=args.force)

    bars = _StepBars()

    def on_stage(name, i, n):
        bars.close()
        console.rule(f"[bold]stage {i + 1}/{n}: {name}")

    try:
        summary = build(opts, args.out, on_stage=on_stage, on_progress=bars)
    finally:
        bars.close()
    con = Console()
    if summary.get("bench_markdown"):
        con.print(summary["bench_markdown"])
    con.print("[bold]artefacts[/bold]")
    for k, v in summary["artefacts"].items():
        con.print(f"  {k:14s} {v}")
    con.print("  timings        " + ", ".join(f"{k} {v:.0f} s" for k, v in summary["timings_s"].items()))
    return 0


def register(sub) -> None:
    s = sub.add_parser(
        "serve", help="OpenAI-compatible HTTP server over llama.cpp, onnxruntime or PyTorch",
        description="Serve one model over an OpenAI-compatible API: /v1/models, /v1/completions, "
                    "/v1/chat/completions (streaming with server-sent events), /health. Requests "
                    "are queued and answered one at a time.")
    _engine_args(s, "what to serve")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    s.add_argument("--model-id", help="the model name clients send (default: the file or directory name)")
    s.add_argument("--max-queue", type=int, default=64, help="requests allowed to wait (default 64; more get 503)")
    s.add_argument("--verbose", action="store_true", help="log every request")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser(
        "bench", help="benchmark dense vs pruned: size, memory, prefill/decode speed, perplexity",
        description="Measure dense and pruned artefacts side by side in one run, alternating round "
                    "by round, each run in a fresh process: file size, load time, peak RSS, prefill "
                    "tokens/s (128- and 512-token prompts), decode tokens/s (128 tokens), and "
                    "per-language perplexity on the eval split. Prints the measured decode speedup "
                    "next to the ideal one (weight bytes read per token, dense / pruned).")
    s.add_argument("--dense", nargs="+", metavar="PATH", help="dense artefacts (.gguf, ONNX dir, model dir)")
    s.add_argument("--pruned", nargs="+", metavar="PATH", help="pruned artefacts, same kinds")
    s.add_argument("--targets", help="target languages, marked in the table (e.g. en,de,fr)")
    s.add_argument("--other-langs", help=f"non-target languages to score (default {','.join(DEFAULT_OTHER_LANGS)})")
    s.add_argument("--no-ppl", action="store_true", help="skip perplexity")
    s.add_argument("--ppl-tokens", type=int, default=1024, help="tokens scored per language (default 1024)")
    s.add_argument("--rounds", type=int, default=3, help="measurement rounds per artefact (default 3)")
    s.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    s.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    s.add_argument("--out", help="directory for bench.json, bench.md and bench.png")
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser(
        "build", help="the main job: profile → prune → export GGUF and ONNX → bench",
        description="Profile the target languages (reused from the cache when nothing changed), "
                    "prune the FFN, export dense and pruned models to GGUF and ONNX (parity-checked), "
                    "benchmark them side by side, and print the table and every artefact's path.")
    s.add_argument("--model", help="embedded model name (default gemma-3-270m), a .gguf file, or a "
                                   "Hugging Face model directory")
    s.add_argument("--langs", default="en,de,fr", help="target languages (default en,de,fr)")
    s.add_argument("--rate", type=float, default=0.5, help="share of FFN parameters removed (default 0.5)")
    s.add_argument("--strategy", default="mass", choices=["mass", "frequency", "magnitude", "random"])
    s.add_argument("--schedule", default="adaptive", choices=["adaptive", "uniform"])
    s.add_argument("--granularity", default="neuron", choices=["neuron", "expert"])
    s.add_argument("--no-compensate", action="store_true", help="skip the least-squares refit")
    s.add_argument("--trim-vocab", action="store_true",
                   help="also trim the vocabulary to the target languages (see 'prune --help')")
    s.add_argument("--tokens-per-lang", type=int, default=8192, help="profile tokens per language")
    s.add_argument("--gguf", default="q8_0", help="GGUF quantization (f32, f16, q8_0, q4_k_m, q4_0) or none")
    s.add_argument("--onnx", default="int8", help="ONNX precision (fp32, fp16, int8, int4) or none")
    s.add_argument("--rounds", type=int, default=3, help="benchmark rounds (default 3)")
    s.add_argument("--no-bench", action="store_true", help="stop after the exports")
    s.add_argument("--out", default="babel-edge-build", help="output directory (default ./babel-edge-build)")
    s.add_argument("--force", action="store_true", help="reuse a non-empty output directory")
    s.set_defaults(func=cmd_build)

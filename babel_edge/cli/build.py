"""`babel-edge build`: the main job — profile → prune → export GGUF and ONNX → bench."""
from __future__ import annotations

from .prune import add_prune_options, prune_options


class _StepBars:
    """One rich bar per stage over the steps `build` reports (exports, benchmark runs)."""

    def __init__(self):
        self.stage, self.cm, self.advance, self.done = None, None, None, 0

    def __call__(self, stage: str, done: int, total: int, what: str) -> None:
        from ..progress import count_progress

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


def register(sub) -> None:
    from .. import precision as P
    from ..pipeline import BuildOptions

    d = BuildOptions(langs=["en"])
    s = sub.add_parser(
        "build", help="the main job: profile → prune → export GGUF and ONNX → bench",
        description="Profile the target languages (reused from the cache when nothing changed), "
                    "prune the FFN, export dense and pruned models to GGUF and ONNX (parity-checked), "
                    "benchmark them side by side, and print the table and every artefact's path.")
    s.add_argument("--model", help="embedded model name (default gemma-3-270m), a .gguf file, or a "
                                   "Hugging Face model directory")
    s.add_argument("--langs", default="en,de,fr", help="target languages (default en,de,fr)")
    s.add_argument("--rate", type=float, default=d.rate,
                   help=f"share of FFN parameters removed (default {d.rate})")
    add_prune_options(s, d.prune)
    s.add_argument("--tokens-per-lang", type=int, default=d.tokens_per_lang,
                   help=f"profile tokens per language (default {d.tokens_per_lang})")
    s.add_argument("--gguf", default=d.gguf_quant,
                   help=f"GGUF precision ({', '.join(P.names('gguf'))}) or none "
                        f"(default {d.gguf_quant})")
    s.add_argument("--onnx", default=d.onnx_precision,
                   help=f"ONNX precision ({', '.join(P.names('onnx'))}) or none "
                        f"(default {d.onnx_precision})")
    s.add_argument("--rounds", type=int, default=d.bench_rounds,
                   help=f"benchmark rounds (default {d.bench_rounds})")
    s.add_argument("--no-bench", action="store_true", help="stop after the exports")
    s.add_argument("--out", default="babel-edge-build", help="output directory (default ./babel-edge-build)")
    s.add_argument("--force", action="store_true", help="reuse a non-empty output directory")
    s.set_defaults(func=run)


def run(args) -> int:
    from rich.console import Console

    from ..corpus import parse_langs
    from ..pipeline import BuildOptions, build
    from ..progress import console

    opts = BuildOptions(langs=parse_langs(args.langs), rate=args.rate, model=args.model,
                        gguf_quant=None if args.gguf == "none" else args.gguf,
                        onnx_precision=None if args.onnx == "none" else args.onnx,
                        tokens_per_lang=args.tokens_per_lang, prune=prune_options(args),
                        bench_rounds=args.rounds, bench=not args.no_bench, force=args.force)
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

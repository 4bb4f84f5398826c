"""GGUF export of the embedded Gemma 3 270M, dense vs FFN-pruned at rate 0.5: sizes, tensor
types, parity and time per export.

    python bench/bench_export_gguf.py [--quants f16,q8_0,...] [--threads 1] [--out DIR]

The parity gates in babel_edge/precision.py are set from this benchmark's JSON.

The pruned model is made here by the real pruner (`prune_loaded`, the default mass
strategy with compensation, calibrated on en/de/fr profile-split text) at per-layer
widths drawn with a fixed seed (multiples of 32, 50% of the FFN in total), so the
benchmark needs no profile and the gemma4 rewrite sees widths that differ per layer.
The dense model exports to its native `gemma3`; the pruned one to `gemma4`
(per-layer widths) and, as the reference, to `gemma3` zero-padded to 2048 (same
function, no savings): the two llama.cpp files are compared with each other too.
Results go to bench/results/export_gguf.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from babel_edge import precision as P

ROOT = Path(__file__).resolve().parent
RATE = 0.5
SEED = 0
LANGS = ("en", "de", "fr")


def random_widths(full: int, n: int, rate: float, seed: int, unit: int = 32) -> list[int]:
    """Per-layer widths, multiples of `unit`, spread +-25% around (1-rate)*full, exact total."""
    g = torch.Generator().manual_seed(seed)
    mean = full * (1 - rate) / unit
    w = [int(x) * unit for x in torch.randint(int(mean * 0.75), int(mean * 1.25) + 1, (n,), generator=g)]
    target = int(round(full * n * (1 - rate) / unit)) * unit
    while sum(w) != target:
        i = int(torch.randint(0, n, (1,), generator=g))
        w[i] = min(full, max(unit, w[i] + (unit if sum(w) < target else -unit)))
    return w


def prune_real(lm, texts_for, rate: float = RATE, seed: int = SEED):
    """The real pruner (babel_edge.prune.prune_loaded, mass strategy with compensation, from a
    2,048-token-per-language profile of the targets' profile split) at seeded per-layer widths;
    returns (LoadedModel with the pruned model, widths)."""
    import dataclasses

    from babel_edge.models.adapters import ffn_layers
    from babel_edge.prune import PruneOptions, prune_loaded

    from babel_edge.profile import profile_model

    views = ffn_layers(lm.model)
    widths = random_widths(views[0].width, len(views), rate, seed)
    profile = profile_model(lm, list(LANGS), texts_for, tokens_per_lang=2048)
    model, _plan = prune_loaded(lm, list(LANGS), rate, PruneOptions(schedule="adaptive", calib_tokens=4096),
                                profile=profile, texts_for=texts_for, widths=widths)
    return dataclasses.replace(lm, model=model), widths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quants", default=",".join(P.names("gguf")),
                    help="GGUF precisions (default: every one in babel_edge.precision)")
    ap.add_argument("--threads", type=int, default=None,
                    help="llama.cpp/torch threads (default: all cores; on a busy machine 1 is faster)")
    ap.add_argument("--out", default="/tmp/babel-edge-bench-gguf")
    ap.add_argument("--skip-dense", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("BABEL_EDGE_QUIET", "1")

    from babel_edge.corpus import load_corpus
    from babel_edge.exporters.gguf import export_gguf
    from babel_edge.exporters.gguf.llama import LlamaRunner
    from babel_edge.models import load_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    quants = args.quants.split(",")
    corpus = load_corpus()
    calib = [t for lang in LANGS for t in corpus.texts(lang, "profile")[:6]]
    rows = []

    from babel_edge.exporters.parity import ParityError

    failed: list[dict] = []

    def run(lm, tag, quant, **kw):
        path = out / f"{tag}-{quant}.gguf"
        t = time.time()
        try:
            s = export_gguf(lm, path, quant, force=True, threads=args.threads, verbose=False, **kw)
        except ParityError as e:         # a measurement too: recorded, and the run goes on
            print(f"{tag:>14} {quant:>7} FAILED its gate: {e}", flush=True)
            failed.append({"model": tag, "precision": quant, "parity_failed": str(e)})
            return None
        s["wall_seconds"] = round(time.time() - t, 1)
        p = s["parity"]
        print(f"{tag:>14} {quant:>7} {s['architecture']:>7} {s['file_bytes'] / 1e6:8.1f} MB "
              f"(FFN {s['ffn_bytes'] / 1e6:6.1f} MB) max|Δ| {p['max_abs_diff']:.3g} "
              f"argmax {p['argmax_agreement']:.1%} ppl ×{p['ppl_ratio']:.4f} "
              f"{s['wall_seconds']:.0f}s  {s['tensor_types']}", flush=True)
        rows.append({"model": tag, **{k: s[k] for k in (
            "precision", "architecture", "file_bytes", "ffn_bytes", "parameters", "ffn_widths",
            "padded", "tensor_types", "tensor_types_by_tensor", "k_quant_fallbacks", "parity",
            "sample", "seconds", "wall_seconds", "rewrites")}})
        return path

    lm = load_model(None)
    if not args.skip_dense:
        for q in quants:
            run(lm, "dense", q)
    lm, widths = prune_real(lm, lambda l: corpus.texts(l, "profile"))
    print("pruned widths", widths, flush=True)
    files = {}
    for q in quants:
        files[q] = run(lm, "pruned", q)
    # With f16 among --quants: the same pruned model as gemma3, zero-padded to 2048, the reference
    # for the gemma4 rewrite (compared in llama.cpp below).
    g4 = files.get("f16")
    ref = run(lm, "pruned-padded", "f16", align=2048) if g4 is not None else None
    cross = None
    if g4 is not None:
        ids = [lm.tokenizer(t)["input_ids"][:128] for t in calib[::6]]
        a, b = LlamaRunner(g4, 160, args.threads), LlamaRunner(ref, 160, args.threads)
        d = [np.abs(a.logits(x) - b.logits(x)) for x in ids]
        agree = [float((a.logits(x).argmax(1) == b.logits(x).argmax(1)).mean()) for x in ids]
        a.close(), b.close()
        cross = {"max_abs_diff": float(max(x.max() for x in d)), "argmax_agreement": float(np.mean(agree))}
        print("gemma4 f16 vs padded gemma3 f16 (both llama.cpp):", cross, flush=True)

    res = ROOT / "results"
    res.mkdir(exist_ok=True)
    doc = {"model": "gemma-3-270m (embedded)", "rate": RATE, "seed": SEED, "langs": LANGS,
           "pruned_widths": widths, "threads": args.threads, "exports": rows, "failed": failed,
           "gemma4_vs_padded_gemma3": cross, "cpu_count": os.cpu_count(),
           "load_average": os.getloadavg()}
    (res / "export_gguf.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    lines = ["| model | precision | arch | file MB | FFN MB | max abs Δlogit | argmax | ppl ratio | s |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        p = r["parity"]
        lines.append(f"| {r['model']} | {r['precision']} | {r['architecture']} | "
                     f"{r['file_bytes'] / 1e6:.1f} | {r['ffn_bytes'] / 1e6:.1f} | {p['max_abs_diff']:.3g} | "
                     f"{p['argmax_agreement']:.1%} | {p['ppl_ratio']:.4f} | {r['wall_seconds']:.0f} |")
    (res / "export_gguf.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""GGUF export of the embedded Gemma 3 270M, dense vs FFN-pruned at rate 0.5: sizes, tensor
types, parity and time per export.

    python bench/bench_export_gguf.py [--quants f16,q8_0,q4_k_m] [--threads 1] [--out DIR]

The pruned model is made here, in memory, so the benchmark does not depend on a
profile: per-layer widths drawn with a fixed seed (multiples of 32, 50% of the
FFN in total), and in each layer the neurons with the largest activation mass on
en/de/fr text (mean |a| x down-projection column norm) are kept — the same
importance `babel-edge prune --strategy mass` uses, without compensation.
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

ROOT = Path(__file__).resolve().parent
RATE = 0.5
SEED = 0
LANGS = ("en", "de", "fr")


def activation_mass(model, tokenizer, texts, max_tokens: int = 1024) -> list[torch.Tensor]:
    """Per layer [F]: mean |input of down_proj| over the texts' tokens."""
    from babel_edge.models.adapters import ffn_layers

    views = ffn_layers(model)
    sums = [torch.zeros(v.width, dtype=torch.float64) for v in views]
    count = [0]
    def hook(i):
        def pre(_mod, args):               # returns None: the input is left as it is
            sums[i].add_(args[0].abs().sum(dim=(0, 1)).double())
        return pre

    hooks = [v.down.register_forward_pre_hook(hook(v.index)) for v in views]
    try:
        seen = 0
        with torch.inference_mode():
            for t in texts:
                ids = tokenizer(t, return_tensors="pt")["input_ids"][:, :256]
                model(input_ids=ids)
                count[0] += ids.shape[1]
                seen += ids.shape[1]
                if seen >= max_tokens:
                    break
    finally:
        for h in hooks:
            h.remove()
    return [s / max(count[0], 1) for s in sums]


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


def prune_in_memory(model, tokenizer, texts, rate: float = RATE, seed: int = SEED) -> list[int]:
    from babel_edge.models.adapters import ffn_layers
    from babel_edge.prune.model_dir import shrink_layer

    views = ffn_layers(model)
    mass = activation_mass(model, tokenizer, texts)
    widths = random_widths(views[0].width, len(views), rate, seed)
    for v, w in zip(views, widths):
        score = mass[v.index].float() * v.down.weight.norm(dim=0)
        shrink_layer(model, v.index, torch.sort(torch.topk(score, w).indices).values)
    return widths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quants", default="f16,q8_0,q4_k_m")
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

    def run(lm, tag, quant, **kw):
        path = out / f"{tag}-{quant}.gguf"
        t = time.time()
        s = export_gguf(lm, path, quant, force=True, threads=args.threads, verbose=False, **kw)
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
    widths = prune_in_memory(lm.model, lm.tokenizer, calib)
    print("pruned widths", widths, flush=True)
    files = {}
    for q in quants:
        files[q] = run(lm, "pruned", q)
    # The same pruned model as gemma3, zero-padded to 2048: the reference for the gemma4 rewrites.
    ref = run(lm, "pruned-padded", "f16", align=2048)
    g4 = files.get("f16")
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
           "pruned_widths": widths, "threads": args.threads, "exports": rows,
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

"""Benchmark the ONNX exporter: export time, file sizes, parity and decode speed.

    python bench/bench_export_onnx.py                       # embedded Gemma 3 270M, dense + pruned 0.5
    python bench/bench_export_onnx.py --precisions fp32,int8 --variants pruned --json out.json
    python bench/bench_export_onnx.py --model path/to/pruned-dir --variants model

Variants: `dense` (the model as loaded), `pruned` (the model pruned in memory to per-layer
widths averaging --rate of the FFN, by the real pruner, `prune_loaded`: default options, mass
strategy with compensation, profiled and calibrated on en/de/fr profile-split text), `model` (a directory as given,
e.g. written by `babel-edge prune`). For each variant × precision: export (with its parity
check), then greedy decoding through the KV cache in onnxruntime vs PyTorch on the same
model (same prompt, same number of tokens, same thread count).

The machine matters: quote the load average printed with the results next to any number.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROMPT = "The capital of France is Paris. The capital of Germany is"


def prune_real(lm, rate: float, multiple: int = 32, spread: float = 0.2):
    """The real pruner (`prune_loaded`, default PruneOptions) at per-layer widths averaging
    (1 - rate) of the FFN, growing with depth by ±spread/2, so the export sees widths that
    differ per layer without needing a profile. Returns the pruned model."""
    from babel_edge.corpus import load_corpus
    from babel_edge.models import ffn_layers
    from babel_edge.prune import PruneOptions, prune_loaded

    views = ffn_layers(lm.model)
    n, keep = len(views), 1.0 - rate
    widths = [max(multiple, int(round(v.width * (keep - spread / 2 + spread * v.index / max(n - 1, 1))
                                      / multiple)) * multiple) for v in views]
    from babel_edge.profile import profile_model

    corpus = load_corpus()
    texts_for = lambda l: corpus.texts(l, "profile")  # noqa: E731
    profile = profile_model(lm, ["en", "de", "fr"], texts_for, tokens_per_lang=2048)
    model, _ = prune_loaded(lm, ["en", "de", "fr"], rate, PruneOptions(schedule="adaptive", calib_tokens=4096),
                            profile=profile, texts_for=texts_for, widths=widths, copy=False)
    lm.model = model
    return model


def torch_decode(model, ids, n):
    """(tokens, prefill seconds, decode tokens/s) of greedy decoding with the HF KV cache."""
    import torch

    with torch.inference_mode():
        t0 = time.perf_counter()
        out = model(torch.tensor([ids]), use_cache=True)
        t1 = time.perf_counter()
        past, tok = out.past_key_values, out.logits[0, -1].argmax()
        toks = [int(tok)]
        for _ in range(n - 1):
            out = model(tok.view(1, 1), past_key_values=past, use_cache=True)
            past, tok = out.past_key_values, out.logits[0, -1].argmax()
            toks.append(int(tok))
        t2 = time.perf_counter()
    return toks, t1 - t0, (n - 1) / (t2 - t1)


def ort_decode(runner, ids, n):
    t0 = time.perf_counter()
    out, cache = runner.forward(np.array([ids]))
    t1 = time.perf_counter()
    tok = int(out[0, -1].argmax())
    toks = [tok]
    for _ in range(n - 1):
        out, cache = runner.forward(np.array([[tok]]), cache)
        tok = int(out[0, -1].argmax())
        toks.append(tok)
    t2 = time.perf_counter()
    return toks, t1 - t0, (n - 1) / (t2 - t1)


def agree_prefix(a, b) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model spec (default: the embedded Gemma 3 270M)")
    ap.add_argument("--variants", default="dense,pruned", help="dense,pruned,model")
    ap.add_argument("--precisions", default="fp32,int8,int4")
    ap.add_argument("--rate", type=float, default=0.5, help="FFN share removed by the 'pruned' variant")
    ap.add_argument("--tokens", type=int, default=48, help="greedy tokens to decode")
    ap.add_argument("--threads", type=int, default=None, help="threads for torch and onnxruntime")
    ap.add_argument("--out", default=None, help="where to write the exports (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the exports")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse exports already in --out (re-measure decode speed only)")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)

    import torch

    from babel_edge.exporters.onnx import SUMMARY_FILE, OnnxCausalLM, export_onnx
    from babel_edge.exporters.parity import ParityError
    from babel_edge.models import ffn_layers, load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-onnx-"))
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for variant in args.variants.split(","):
        lm = load_model(args.model)
        if variant == "pruned":
            prune_real(lm, args.rate)
        tok = lm.tokenizer
        ids = list(tok(PROMPT)["input_ids"])
        ref_toks, t_pre, t_tps = torch_decode(lm.model, ids, args.tokens)
        print(f"[{variant}] torch: prefill {len(ids)} tok in {t_pre:.3f}s, decode {t_tps:.1f} tok/s "
              f"→ {tok.decode(ref_toks)!r}", file=sys.stderr)
        for precision in args.precisions.split(","):
            out = root / f"{variant}-{precision}"
            row = {"variant": variant, "precision": precision,
                   "ffn_widths": [v.width for v in ffn_layers(lm.model)]}
            t0 = time.perf_counter()
            if args.reuse and (out / SUMMARY_FILE).exists():
                s = json.loads((out / SUMMARY_FILE).read_text())
                row["export_s"] = s["seconds"]["total"]
            else:
                try:
                    s = export_onnx(lm, out, precision, force=True, verbose=False)
                except ParityError as e:
                    row.update(export_s=round(time.perf_counter() - t0, 1), error=str(e))
                    rows.append(row)
                    print(f"[{variant} {precision}] {e}", file=sys.stderr)
                    continue
                row["export_s"] = round(time.perf_counter() - t0, 1)
            row.update(model_bytes=s["model_bytes"], parameters=s["parameters"],
                       ffn_kept=s["ffn_kept"], parity={k: s["parity"][k] for k in (
                           "max_abs_diff", "mean_abs_diff", "argmax_agreement", "ppl_reference",
                           "ppl_export", "ppl_ratio", "positions")},
                       seconds=s["seconds"], ops={k: v for k, v in s["ops"].items()
                                                  if k in ("MatMul", "MatMulNBits", "Gather")})
            runner = OnnxCausalLM(out, threads=args.threads)
            runner.forward(np.array([ids]))            # warm-up (first run allocates)
            o_toks, o_pre, o_tps = ort_decode(runner, ids, args.tokens)
            row.update(torch_decode_tps=round(t_tps, 1), ort_decode_tps=round(o_tps, 1),
                       torch_prefill_s=round(t_pre, 3), ort_prefill_s=round(o_pre, 3),
                       greedy_agree_prefix=agree_prefix(o_toks, ref_toks), tokens=args.tokens,
                       ort_text=tok.decode(o_toks))
            del runner
            rows.append(row)
            print(f"[{variant} {precision}] {row['model_bytes'] / 1e6:.1f} MB, export "
                  f"{row['export_s']}s, argmax {row['parity']['argmax_agreement']:.3f}, ppl ×"
                  f"{row['parity']['ppl_ratio']:.4f}, ORT {o_tps:.1f} tok/s vs torch {t_tps:.1f}, "
                  f"greedy agree {row['greedy_agree_prefix']}/{args.tokens}", file=sys.stderr)
            if not (args.keep or args.reuse):
                shutil.rmtree(out, ignore_errors=True)
        del lm
    if not args.out and not args.keep:
        shutil.rmtree(root, ignore_errors=True)

    env = {"load_average": os.getloadavg(), "cpus": os.cpu_count(), "threads": args.threads,
           "max_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)}
    print("\n| variant | precision | size MB | export s | max abs Δ | argmax | ppl ratio | "
          "ORT tok/s | torch tok/s | greedy agree |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['variant']} | {r['precision']} | — | {r['export_s']} | parity failed: "
                  f"{r['error']} | | | | | |")
            continue
        p = r["parity"]
        print(f"| {r['variant']} | {r['precision']} | {r['model_bytes'] / 1e6:.1f} | {r['export_s']} | "
              f"{p['max_abs_diff']:.3g} | {p['argmax_agreement']:.3f} | {p['ppl_ratio']:.4f} | "
              f"{r['ort_decode_tps']} | {r['torch_decode_tps']} | {r['greedy_agree_prefix']}/{r['tokens']} |")
    print(f"\n{json.dumps(env)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "rows": rows}, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How the expert split's cost grows with the layer: balanced k-means over one layer's gate rows.

`profile` splits every FFN layer's F neurons into F / 32 experts by balanced k-means over the
gate rows (babel_edge.experts.kmeans_split, float64, one thread per layer as profile runs it).
Its cost per Lloyd iteration is ~F x (F/32) x hidden: quadratic in the FFN width. This times
one layer of each shape (random gate rows; the iteration count is fixed, so the data does not
matter much) and fits seconds = c x F^2 x hidden / expert_size, for the 70B plan in README.

    python bench/bench_kmeans.py [--shapes 2048x640,4096x1152,8192x3072]

Writes bench/results/kmeans_scaling.{json,md}.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "kmeans_scaling"
# FFN width x hidden size of models users ship (for the extrapolation rows)
TARGETS = {"Llama 3.1 8B": (14336, 4096, 32), "Gemma 3 27B": (21504, 5376, 62),
           "Llama 3.1 70B": (28672, 8192, 80)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", default="2048x640,4096x1152,8192x3072")
    p.add_argument("--expert-size", type=int, default=32)
    a = p.parse_args(argv)

    import torch

    from babel_edge.experts import kmeans_split
    from babel_edge.io import write_json, write_text

    rows = []
    for shape in a.shapes.split(","):
        f, h = (int(x) for x in shape.split("x"))
        w = torch.randn(f, h, generator=torch.Generator().manual_seed(0))
        t = time.perf_counter()
        kmeans_split([w], a.expert_size, seed=0)
        s = time.perf_counter() - t
        rows.append({"ffn": f, "hidden": h, "seconds": round(s, 2),
                     "c": s / (f * f * h / a.expert_size)})
        print(f"F={f} hidden={h}: {s:.1f} s", file=sys.stderr, flush=True)
    c = rows[-1]["c"]                   # the largest layer measured: closest to the targets
    extra = {name: {"ffn": f, "hidden": h, "layers": n,
                    "hours_one_core": c * f * f * h / a.expert_size * n / 3600}
             for name, (f, h, n) in TARGETS.items()}
    res = {"expert_size": a.expert_size, "rows": rows, "extrapolated": extra,
           "command": "python bench/bench_kmeans.py " + " ".join(argv or sys.argv[1:])}
    write_json(RESULTS.with_suffix(".json"), res)
    md = ["# Expert split (balanced k-means) cost per layer", "",
          f"Made by `{res['command']}`; one thread, float64, experts of {a.expert_size} neurons.", "",
          "| FFN width | hidden | seconds (one layer) |", "|---:|---:|---:|"]
    md += [f"| {r['ffn']:,} | {r['hidden']:,} | {r['seconds']:.1f} |" for r in rows]
    md += ["", "Extrapolated with seconds ∝ F² × hidden (fitted on the largest measured layer), "
               "all layers, one core:", "", "| model | FFN × hidden × layers | hours |", "|---|---|---:|"]
    md += [f"| {n} | {e['ffn']:,} × {e['hidden']:,} × {e['layers']} | {e['hours_one_core']:.1f} |"
           for n, e in extra.items()]
    write_text(RESULTS.with_suffix(".md"), "\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())

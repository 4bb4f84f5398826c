"""Data-parallel profiling on one machine: 2 processes x 1 thread vs 1 process x 2 threads.

Runs `babel-edge profile` on the embedded model for --langs (--tokens-per-lang each), once
as one process with --threads torch threads and once as `--nproc 2` (torchrun, gloo; each
process 1 thread), alternating the two --rounds times, each into a fresh file. Reports the
wall-clock time of the whole command (model loading included: what a user waits for),
median and min–max, their ratio, and whether the two profiles are the same file content
(counts exactly, sums to 1e-9 relative).

    python bench/bench_distributed.py [--langs en,de,fr] [--tokens-per-lang 4096] [--rounds 2]

Writes bench/results/distributed_scaling.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "distributed_scaling"


def run(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall-clock seconds, the recording rate in tokens/s the command printed)."""
    import re

    t = time.perf_counter()
    r = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    m = re.search(r"\(([\d,]+) tok/s\)", r.stdout)
    return wall, float(m.group(1).replace(",", "")) if m else float("nan")


def same_profile(a: Path, b: Path) -> dict:
    import torch
    from safetensors.torch import load_file

    x, y = load_file(str(a)), load_file(str(b))
    worst = 0.0
    for k in x:
        if x[k].dtype in (torch.int64, torch.int32):
            if not torch.equal(x[k], y[k]):
                return {"same": False, "tensor": k}
        else:
            d = (x[k].double() - y[k].double()).abs().max() / x[k].double().abs().max().clamp_min(1e-30)
            worst = max(worst, float(d))
    return {"same": x.keys() == y.keys() and worst <= 1e-9, "max_rel_diff": worst}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--langs", default="en,de,fr")
    p.add_argument("--tokens-per-lang", type=int, default=4096)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch threads of the single process")
    a = p.parse_args(argv)

    from babel_edge.io import write_json, write_text

    exe = str(Path(sys.executable).with_name("babel-edge"))
    base = [exe, "profile", "--langs", a.langs, "--tokens-per-lang", str(a.tokens_per_lang)]
    work = Path(tempfile.mkdtemp(prefix="bench-dist-"))
    env = dict(os.environ, BABEL_EDGE_QUIET="1")
    times = {"1x2": [], "2x1": []}
    rates = {"1x2": [], "2x1": []}
    for r in range(a.rounds):
        order = ("1x2", "2x1") if r % 2 == 0 else ("2x1", "1x2")
        for mode in order:
            out = work / f"{mode}-{r}.safetensors"
            if mode == "1x2":
                t, rate = run(base + ["--out", str(out)], dict(env, OMP_NUM_THREADS=str(a.threads)))
            else:
                t, rate = run(base + ["--out", str(out), "--nproc", "2"], dict(env, OMP_NUM_THREADS="1"))
            times[mode].append(round(t, 1))
            rates[mode].append(rate)
            print(f"round {r} {mode}: {t:.1f} s, recording {rate:.0f} tok/s", file=sys.stderr, flush=True)
    check = same_profile(work / "1x2-0.safetensors", work / "2x1-0.safetensors")
    med = {m: statistics.median(v) for m, v in times.items()}
    res = {"langs": a.langs.split(","), "tokens_per_lang": a.tokens_per_lang, "rounds": a.rounds,
           "cpus": os.cpu_count(), "seconds": times, "median_s": med,
           "recording_tok_s": rates, "median_recording_tok_s": {m: statistics.median(v) for m, v in rates.items()},
           "speedup_2x1_over_1x2": med["1x2"] / med["2x1"], "profiles_equal": check,
           "command": "python bench/bench_distributed.py " + " ".join(argv or sys.argv[1:])}
    write_json(RESULTS.with_suffix(".json"), res)
    md = ["# Data-parallel profiling on one machine — embedded Gemma 3 270M", "",
          f"Made by `{res['command']}`: `babel-edge profile --langs {a.langs} --tokens-per-lang "
          f"{a.tokens_per_lang}`, wall clock of the whole command (model loading included), "
          f"{a.rounds} alternating rounds, {os.cpu_count()} cores.", "",
          "| layout | median s | min–max s | recording tok/s (median) |", "|---|---:|---:|---:|",
          f"| 1 process × {a.threads} threads | {med['1x2']:.1f} | {min(times['1x2']):.1f}–{max(times['1x2']):.1f} "
          f"| {res['median_recording_tok_s']['1x2']:,.0f} |",
          f"| 2 processes × 1 thread (`--nproc 2`, gloo) | {med['2x1']:.1f} | "
          f"{min(times['2x1']):.1f}–{max(times['2x1']):.1f} | {res['median_recording_tok_s']['2x1']:,.0f} |", "",
          f"Speed-up of 2 × 1 over 1 × {a.threads}: ×{res['speedup_2x1_over_1x2']:.2f}. Profiles equal "
          f"(counts exact, sums ≤ 1e-9 relative): {check['same']} "
          f"(largest relative difference {check.get('max_rel_diff', 'n/a')})."]
    write_text(RESULTS.with_suffix(".md"), "\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())

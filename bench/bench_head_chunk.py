"""How many positions the LM head should take at once on a CPU (evaluate.HEAD_CHUNK).

The embedded Gemma 3 270M's head has 262,144 rows: [positions, vocab] fp32 logits take 1 MB
per position. Times the two jobs that run the whole head — scoring text (evaluate.torch_scorer,
which every bits-per-byte figure of the PyTorch engine uses) and the teacher's top-k for
distillation (heal.distill.teacher_topk) — at several chunk sizes, with the process's user
and system CPU seconds (getrusage): large blocks are mapped fresh by the allocator (system
time), small ones read the head's weights once per block. Each setting is timed --repeats times, alternating the
settings; median and min–max. The scores must not depend on the chunk (checked).

    python bench/bench_head_chunk.py [--chunks 16,32,64,256,1024] [--repeats 3]

Writes bench/results/head_chunk.{json,md}.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

from common import write_results

RESULTS = Path(__file__).resolve().parent / "results" / "head_chunk"


def timed(fn):
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    out = fn()
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    return out, {"wall": t1 - t0, "user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chunks", default="16,32,64,256,1024")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seqs", type=int, default=8, help="training sequences of 256 tokens for top-k")
    p.add_argument("--max-bytes", type=int, default=3000, help="eval bytes per language to score")
    a = p.parse_args(argv)

    import torch

    from babel_edge.corpus import load_corpus
    from babel_edge.evaluate import HEAD_CHUNK, evaluate_languages, hf_tokenize, torch_scorer
    from babel_edge.heal.data import training_text
    from babel_edge.heal.distill import teacher_topk
    from babel_edge.models import load_model
    from babel_edge.prune.run import fitting_texts

    torch.set_num_threads(a.threads)
    langs = ["en", "de", "fr"]
    corpus = load_corpus()
    unseen = corpus.unseen_domain(langs)
    lm = load_model(None)
    text = training_text(langs, fitting_texts(corpus, langs), lm.tokenizer, 256, 256 * a.seqs)
    ev = {l: corpus.texts(l, "eval", domains=[unseen]) for l in langs}
    chunks = [int(c) for c in a.chunks.split(",")]
    jobs = {
        "score": lambda c: [r.nll for r in evaluate_languages(
            langs, ev.__getitem__, hf_tokenize(lm.tokenizer), torch_scorer(lm.model, chunk=c),
            max_bytes=a.max_bytes)],
        "teacher top-k": lambda c: teacher_topk(lm.model, text.teacher, 32, chunk=c).logp,
    }
    rows = {job: {c: [] for c in chunks} for job in jobs}
    ref = {}
    for rep in range(a.repeats):
        for job, fn in jobs.items():
            for c in (chunks if rep % 2 == 0 else chunks[::-1]):      # alternate the order
                out, t = timed(lambda: fn(c))
                rows[job][c].append(t)
                r = torch.as_tensor(out, dtype=torch.float64)
                ref.setdefault(job, r)
                assert torch.allclose(r, ref[job], rtol=1e-4, atol=1e-3), (job, c)
                print(f"{job} chunk {c}: {t['wall']:.1f} s wall, {t['sys']:.1f} s sys",
                      file=sys.stderr, flush=True)
    units = {"score": f"{a.max_bytes:,} bytes of unseen text per language, en/de/fr",
             "teacher top-k": f"{text.n_tokens:,} tokens"}
    res = {"model": "gemma-3-270m", "threads": a.threads, "repeats": a.repeats,
           "default_chunk_when_run": HEAD_CHUNK, "units": units,
           "command": "python bench/bench_head_chunk.py " + " ".join(argv or sys.argv[1:]),
           "rows": {job: {str(c): v for c, v in per.items()} for job, per in rows.items()}}
    write_results(RESULTS, res, markdown)
    return 0


def markdown(res: dict) -> str:
    lines = [f"# LM-head chunk size on a CPU — Gemma 3 270M, {res['threads']} threads", "",
             f"Made by `{res['command']}`. Seconds per job, median (min–max) of {res['repeats']} "
             f"runs, settings alternated; user and system CPU seconds of the process. "
             f"`evaluate.HEAD_CHUNK` was {res.get('default_chunk_when_run', res.get('default_chunk'))} "
             f"when this ran" + (f"; {res['note']}" if res.get("note") else "") + ".", "",
             "| job | positions per head call | wall s | user s | sys s |", "|---|---:|---:|---:|---:|"]
    for job, per in res["rows"].items():
        for c, ts in per.items():
            cell = lambda k: (f"{statistics.median(t[k] for t in ts):.1f} "  # noqa: E731
                              f"({min(t[k] for t in ts):.1f}–{max(t[k] for t in ts):.1f})")
            lines.append(f"| {job} ({res['units'][job]}) | {c} | {cell('wall')} | {cell('user')} | "
                         f"{cell('sys')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

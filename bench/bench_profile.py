"""Benchmark the profiler on the embedded model (Gemma 3 270M).

1. Recording overhead: the decoder forward over the same batches with and without the
   recording hooks, interleaved batch by batch (plain, recorded, recorded, plain, ...)
   so a busy machine slows both alike. Goal: <= 10%. Wall time and this process's CPU
   time are both reported: on a shared machine CPU time is the steadier number.
2. The default profile (all corpus languages, default settings) timed end to end:
   expert split + recording. Goal: <= 10 minutes on 2 cores.

usage: python bench/bench_profile.py [--langs de,zh,ar] [--tokens 2048] [--skip-full]
                                     [--threads N] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def overhead(lm, corpus, langs, tokens, batch_size, max_len, repeat=2) -> dict:
    import torch

    from babel_edge.experts import build_expert_map, random_split
    from babel_edge.profile import LangStats, make_batches, read_neurons, top_k_for
    from babel_edge.profile import take_sequences as select_sequences
    from babel_edge.profile.record import _forward, _stats_reducer
    from babel_edge.profile.run import _special_ids, _tokenize

    model, tok = lm.model, lm.tokenizer
    special = _special_ids(tok)
    batches = []
    for lang in langs:
        seqs, _ = select_sequences(corpus.texts(lang, "profile"), _tokenize(tok), tokens, max_len, special)
        batches += make_batches(seqs, batch_size, tok.pad_token_id or 0, special)
    emap = build_expert_map(model, 32, "kmeans", 0)
    base = random_split(emap.widths(), 32, 1)
    stats = LangStats.zeros(emap, base)
    maps = ([emap.one_hot(i) for i in range(emap.n_layers)], [base.one_hot(i) for i in range(base.n_layers)])
    ks = ([top_k_for(emap.n_experts(i), 0.25) for i in range(emap.n_layers)],) * 2
    rows = [None]
    decoder = model.get_decoder()
    wall = {False: 0.0, True: 0.0}
    cpu = {False: 0.0, True: 0.0}
    with torch.inference_mode():
        _forward(decoder, batches[0], "cpu")                     # warm-up
        for r in range(repeat):
            for j, b in enumerate(batches):
                rows[0] = b.rows
                for rec in ((False, True) if (j + r) % 2 == 0 else (True, False)):
                    t0, c0 = time.perf_counter(), time.process_time()
                    if rec:
                        with read_neurons(model, _stats_reducer(stats, rows, maps, ks)):
                            _forward(decoder, b, "cpu")
                    else:
                        _forward(decoder, b, "cpu")
                    wall[rec] += time.perf_counter() - t0
                    cpu[rec] += time.process_time() - c0
    n = sum(b.n_tokens for b in batches) * repeat
    return {"tokens": n, "batches": len(batches) * repeat, "plain_s": wall[False],
            "recorded_s": wall[True], "plain_tok_s": n / wall[False], "recorded_tok_s": n / wall[True],
            "overhead_wall": wall[True] / wall[False] - 1, "plain_cpu_s": cpu[False],
            "recorded_cpu_s": cpu[True], "overhead_cpu": cpu[True] / cpu[False] - 1}


def full_profile(lm, corpus) -> dict:
    from babel_edge.profile import profile_model

    langs = corpus.languages()
    t0 = time.perf_counter()
    prof = profile_model(lm, langs, lambda lang: corpus.texts(lang, "profile"))
    total = time.perf_counter() - t0
    rec = prof.header["run"]["seconds_recording"]
    return {"languages": len(langs), "tokens": int(prof.tokens.sum()), "total_s": total,
            "recording_s": rec, "split_and_setup_s": total - rec,
            "tok_s": int(prof.tokens.sum()) / rec}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--langs", default="de,zh,ar", help="languages for the overhead test")
    p.add_argument("--tokens", type=int, default=2048, help="tokens per language for the overhead test")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-len", type=int, default=256)
    p.add_argument("--repeat", type=int, default=2, help="passes over the overhead batches")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--skip-full", action="store_true", help="only the overhead test")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()

    import torch

    from babel_edge.corpus import load_corpus
    from babel_edge.models import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    lm = load_model(None)
    corpus = load_corpus()
    res = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                       "load_avg_start": os.getloadavg(), "python": platform.python_version(),
                       "torch": torch.__version__}}
    o = overhead(lm, corpus, args.langs.split(","), args.tokens, args.batch_size, args.max_len,
                 args.repeat)
    res["overhead"] = o
    print(f"recording overhead over {o['tokens']:,} tokens ({o['batches']} batches): plain "
          f"{o['plain_tok_s']:.0f} tok/s, recorded {o['recorded_tok_s']:.0f} tok/s -> wall "
          f"{o['overhead_wall']:+.1%}, CPU time {o['overhead_cpu']:+.1%} (goal <= +10%)")
    if not args.skip_full:
        f = full_profile(lm, corpus)
        res["full"] = f
        print(f"default profile: {f['languages']} languages, {f['tokens']:,} tokens in "
              f"{f['total_s']:.0f} s ({f['split_and_setup_s']:.0f} s expert split and text, "
              f"{f['recording_s']:.0f} s recording at {f['tok_s']:.0f} tok/s; goal <= 600 s)")
    res["machine"]["load_avg_end"] = os.getloadavg()
    print(f"load average start {res['machine']['load_avg_start'][0]:.1f}, "
          f"end {res['machine']['load_avg_end'][0]:.1f} ({os.cpu_count()} cpus, "
          f"{res['machine']['torch_threads']} torch threads)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

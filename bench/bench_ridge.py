"""The ridge of the least-squares refit: fixed values against the per-layer choice on a held-out
fitting domain (`--ridge auto`, the default).

The embedded Gemma 3 270M pruned at `--rate` for en, de, fr (mass strategy, `--schedule`,
FFN only), the kept down columns refit with each ridge of the grid and with the automatic
choice (prune.run.choose_ridge: per layer, the grid value whose refit on the fitting domains
but one keeps the layer output best on the held-out one). Scored in PyTorch fp32 on the same
bytes for every model: *unseen* (eval split of the run's unseen domain, which neither the fit
nor the choice read) and *eval* (in-domain eval split).

    python bench/bench_ridge.py [--rate 0.5] [--schedule uniform]

Writes bench/results/ridge_gemma3_270m.{json,md}.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import bits_per_byte, log, run_texts, write_results

RESULTS = Path(__file__).resolve().parent / "results" / "ridge_gemma3_270m"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--langs", default="en,de,fr")
    p.add_argument("--rate", type=float, default=0.5)
    p.add_argument("--schedule", default="uniform")
    p.add_argument("--max-bytes", type=int, default=12000)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)

    import torch

    from babel_edge.corpus import load_corpus, parse_langs
    from babel_edge.models import load_model
    from babel_edge.pipeline import profile_cache_path
    from babel_edge.profile import load_profile, profile_model, save_profile
    from babel_edge.prune import PruneOptions, prune_loaded
    from babel_edge.prune.options import RIDGE_GRID
    from babel_edge.prune.run import ridge_texts

    torch.set_num_threads(a.threads)
    langs = parse_langs(a.langs)
    corpus = load_corpus()
    unseen, fit, texts = run_texts(langs)
    split = ridge_texts(corpus, langs)
    lm = load_model(None)
    prof_path = profile_cache_path(lm.fingerprint, langs, 8192)
    if not prof_path.exists():
        save_profile(profile_model(lm, langs, fit), prof_path)
    prof = load_profile(prof_path, lm.fingerprint)

    def score(model) -> dict:
        return bits_per_byte(model, lm.tokenizer, texts, a.max_bytes)

    rows = [{"ridge": "dense", **score(lm.model)}]
    for ridge in [*RIDGE_GRID, None]:
        label = "auto" if ridge is None else f"{ridge:g}"
        log(f"ridge {label}")
        t0 = time.perf_counter()
        model, plan = prune_loaded(lm, langs, a.rate, PruneOptions(schedule=a.schedule, ridge=ridge),
                                   profile=prof, texts_for=fit, ridge_split=split)
        row = {"ridge": label, "seconds_prune": round(time.perf_counter() - t0, 1), **score(model)}
        if ridge is None:
            row["chosen"] = plan.compensation["ridge"]
            row["held_out_domains"] = plan.compensation["ridge_choice"].get("held_out_domains")
        rows.append(row)
        del model
    dense = rows[0]
    for r in rows[1:]:
        r["mean_ratio"] = {n: sum(r[n][l] / dense[n][l] for l in langs) / len(langs) for n in texts}
    res = {"model": "gemma-3-270m", "langs": langs, "rate": a.rate, "schedule": a.schedule,
           "unseen_domain": unseen, "max_bytes": a.max_bytes, "rows": rows,
           "command": "python bench/bench_ridge.py " + " ".join(argv or sys.argv[1:])}
    write_results(RESULTS, res, markdown)
    return 0


def markdown(res: dict) -> str:
    langs = res["langs"]
    auto = next(r for r in res["rows"] if r["ridge"] == "auto")
    from collections import Counter

    chosen = Counter(f"{x:g}" for x in auto["chosen"])
    lines = [f"# Ridge of the least-squares refit (Gemma 3 270M, rate {res['rate']}, "
             f"{res['schedule']} schedule, {', '.join(langs)})", "",
             f"Made by `{res['command']}`. PyTorch fp32, bits per byte on the same bytes for every "
             f"model ({res['max_bytes']:,} per language and text); × = mean over the languages of "
             f"the ratio to dense. *unseen*: eval split of '{res['unseen_domain']}'; *eval*: the "
             f"in-domain eval split. auto: per layer on the held-out fitting domain "
             f"({', '.join(f'{l}: {d}' for l, d in (auto.get('held_out_domains') or {}).items())}); "
             f"chosen per layer: " + ", ".join(f"{k} ×{v}" for k, v in sorted(chosen.items())) + ".", "",
             "| ridge | " + " | ".join(f"unseen {l}" for l in langs) + " | unseen × | "
             + " | ".join(f"eval {l}" for l in langs) + " | eval × |",
             "|---|" + "---:|" * (2 * len(langs) + 2)]
    for r in res["rows"]:
        ratio = r.get("mean_ratio", {"unseen": 1.0, "eval": 1.0})
        lines.append(f"| {r['ridge']} | " + " | ".join(f"{r['unseen'][l]:.4f}" for l in langs)
                     + f" | ×{ratio['unseen']:.4f} | " + " | ".join(f"{r['eval'][l]:.4f}" for l in langs)
                     + f" | ×{ratio['eval']:.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

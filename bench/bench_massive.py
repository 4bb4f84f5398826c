"""Massive-activation neurons: why every strategy but `random` keeps them.

On the embedded Gemma 3 270M, the neurons whose mean |activation| on calibration text is at
least MASSIVE_RATIO (20) times their layer's median (babel_edge.prune.calibration.
massive_neurons) are zeroed — all of them, then as many random other neurons, then the
ones above 30x — and the perplexity of a few eval-split paragraphs per language is
compared with the untouched model.

    python bench/bench_massive.py [--langs en,de,fr,ru]

Writes bench/results/massive_gemma3_270m.{json,md}; prune/options.py quotes it.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "massive_gemma3_270m"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--langs", default="en,de,fr,ru")
    p.add_argument("--paragraphs", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    import torch

    from babel_edge.corpus import load_corpus, parse_langs
    from babel_edge.evaluate import evaluate_languages, hf_tokenize, torch_scorer
    from babel_edge.io import write_json, write_text
    from babel_edge.models import ffn_layers, load_model
    from babel_edge.prune.calibration import calibrate, massive_neurons
    from babel_edge.prune.options import MASSIVE_RATIO

    torch.set_num_threads(2)
    langs = parse_langs(a.langs)
    corpus = load_corpus()
    lm = load_model(None)
    cal = calibrate(lm.model, lm.tokenizer, lm.fingerprint, lambda l: corpus.texts(l, "profile"),
                    langs, 8192)
    texts = {l: corpus.texts(l, "eval")[:a.paragraphs] for l in langs}

    def ppl(model) -> dict:
        r = evaluate_languages(langs, texts.__getitem__, hf_tokenize(lm.tokenizer),
                               torch_scorer(model), max_bytes=10 ** 6)
        return {x.lang: x.ppl for x in r}

    def zeroed(ids_per_layer) -> dict:
        m = copy.deepcopy(lm.model)
        with torch.no_grad():
            for v in ffn_layers(m):
                v.down.weight[:, ids_per_layer[v.index]] = 0
        return ppl(m)

    g = torch.Generator().manual_seed(a.seed)
    massive = [massive_neurons(x) for x in cal.mean_abs]
    above30 = [massive_neurons(x, 30.0) for x in cal.mean_abs]
    rnd = []
    for v, ids in zip(ffn_layers(lm.model), massive):
        others = torch.tensor([i for i in range(v.width) if i not in set(ids.tolist())])
        rnd.append(others[torch.randperm(len(others), generator=g)[:len(ids)]])
    rows = {"untouched": ppl(lm.model),
            f"massive (>= {MASSIVE_RATIO:g}x median) zeroed": zeroed(massive),
            "as many random other neurons zeroed": zeroed(rnd),
            "massive >= 30x zeroed": zeroed(above30)}
    res = {"model": "gemma-3-270m", "langs": langs, "paragraphs": a.paragraphs,
           "n_massive": int(sum(len(x) for x in massive)), "n_above_30x": int(sum(len(x) for x in above30)),
           "per_layer": [len(x) for x in massive], "perplexity": rows,
           "command": "python bench/bench_massive.py " + " ".join(argv or sys.argv[1:])}
    md = ["# Massive-activation neurons — Gemma 3 270M", "",
          f"Made by `{res['command']}`. Perplexity on the first {a.paragraphs} eval-split "
          f"paragraphs per language; {res['n_massive']} neurons over {len(massive)} layers are "
          f"massive (per layer: {res['per_layer']}), {res['n_above_30x']} of them above 30x.", "",
          "| model | " + " | ".join(langs) + " |", "|---|" + "---:|" * len(langs)]
    md += [f"| {k} | " + " | ".join(f"{v[l]:,.1f}" for l in langs) + " |" for k, v in rows.items()]
    write_json(RESULTS.with_suffix(".json"), res)
    write_text(RESULTS.with_suffix(".md"), "\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())

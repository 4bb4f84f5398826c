"""Does another ranking of the language evidence keep what unseen text needs at a fixed size?

Tokenizer only (no model runs): for the embedded Gemma 3 270M and targets en, de, fr, every
ranking below chooses `--size` kept tokens from evidence that never read two held-out texts:
  tune     per language, one more fitting domain held out of the evidence here ('fortunes',
           or 'scripture' where the language has no fortunes): the text a ranking may be
           chosen on
  unseen   the eval split of the run's unseen domain (corpus.unseen_domain), the headline text
and reports the share of the untrimmed tokenizer's tokens on each text that the kept set lacks
(each such token becomes two or more tokens; bench_vocab_curve.py measures what that costs in
bits per byte). Rankings:
  frequency        babel-edge's rule: mean over languages of the token's share (wordfreq +
                   fitting text, evidence.py)
  cost^a           share / (tokens its merge closure adds)^a — benefit per kept slot
  max, rms         per-language shares combined by max / root mean square instead of the mean
  words 250k       wordfreq's top 250,000 words per language instead of 100,000
And the tokens the frequency ranking misses most on the unseen text, with their evidence.

    python bench/bench_vocab_ranking.py [--size 65536]

Writes bench/results/vocab_ranking_gemma3_270m.{json,md}.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from pathlib import Path

from common import Ranked, write_results

RESULTS = Path(__file__).resolve().parent / "results" / "vocab_ranking_gemma3_270m"
TUNE_PREFERENCE = ("fortunes", "scripture")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--langs", default="en,de,fr")
    p.add_argument("--size", type=int, default=65536)
    a = p.parse_args(argv)

    from transformers import AutoTokenizer

    from babel_edge.corpus import load_corpus, parse_langs
    from babel_edge.models.loader import resolve_model_dir
    from babel_edge.prune.run import target_scripts
    from babel_edge.vocab.choose import SPM, _encode_many, choose_kept, merge_steps
    from babel_edge.vocab.evidence import _normalise, text_counts, word_counts
    from babel_edge.vocab.source import source_vocab
    from babel_edge.vocab.trim import _tokenizer_key

    langs = parse_langs(a.langs)
    corpus = load_corpus()
    unseen = corpus.unseen_domain(langs)
    tune = {l: next(d for d in TUNE_PREFERENCE if d in corpus.domains(l)) for l in langs}
    md = resolve_model_dir(None)
    tok = AutoTokenizer.from_pretrained(md)
    src = source_vocab(tok, md)
    key = _tokenizer_key(src)
    fit = {l: corpus.texts(l, "profile", exclude=(unseen, tune[l])) for l in langs}
    texts = [t for l in langs for t in fit[l]]
    held = {"tune": {l: corpus.texts(l, "eval", domains=[tune[l]]) for l in langs},
            "unseen": {l: corpus.texts(l, "eval", domains=[unseen]) for l in langs}}
    ids = {name: {l: [i for s in _encode_many(tok, per[l]) for i in s] for l in langs}
           for name, per in held.items()}
    scripts = target_scripts(langs)

    text_share = {l: _normalise(text_counts(tok, fit[l])) for l in langs}

    def per_lang(top: int) -> dict[str, Counter]:
        out = {}
        for l in langs:
            words = _normalise(word_counts(tok, l, key, top))
            c: Counter = Counter()
            for part in (text_share[l], words):
                for t, v in part.items():
                    c[t] += v / 2
            out[l] = c
        return out

    def combine(pl: dict[str, Counter], agg) -> dict[int, float]:
        every = set().union(*pl.values())
        return {t: agg([pl[l].get(t, 0.0) for l in langs]) for t in every}

    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    pl100 = per_lang(100_000)
    base_w = combine(pl100, mean)

    vocab = {t: i for i, t in enumerate(src.tokens)}
    ranks: dict = {}
    for r, pair in enumerate(src.merges):
        ranks.setdefault(pair, r)
    skip = src.added | set(src.byte_ids)

    def closure(i: int) -> set[int]:
        if i in skip:
            return {i}
        out = {i}
        _, steps = merge_steps(src.tokens[i], ranks, vocab, src.kind == SPM)
        for x, y in steps:
            out |= {vocab[x], vocab[y], vocab[x + y]}
        if src.kind == SPM:
            out |= {vocab[c] for t in list(out) for c in src.tokens[t] if c in vocab and len(src.tokens[t]) > 1}
        return out

    # what every choice keeps before any evidence (the floor of --vocab-size)
    floor = None
    try:
        choose_kept(tok, src, texts, [], evidence=Ranked(base_w), size=1, scripts=scripts, symbols=True)
    except Exception as e:  # noqa: BLE001 - the UserError names the floor
        floor = int(str(e).split("below the ")[1].split(" ")[0].replace(",", ""))
    always, _, _ = choose_kept(tok, src, texts, [], evidence=Ranked(base_w), size=floor,
                               scripts=scripts, symbols=True)
    always = set(always)

    def cost_order(alpha: float) -> list[int]:
        pri = {}
        for t, w in base_w.items():
            if 0 <= t < src.size:
                n = len(closure(t) - always)
                pri[t] = math.inf if n == 0 else w / n ** alpha
        return sorted(pri, key=lambda t: (-pri[t], t))

    rankings = [("frequency", lambda: Ranked(base_w)),
                ("cost^0.5", lambda: Ranked(base_w, cost_order(0.5))),
                ("cost^1", lambda: Ranked(base_w, cost_order(1.0))),
                ("max over languages", lambda: Ranked(combine(pl100, max))),
                ("rms over languages", lambda: Ranked(combine(pl100, lambda xs: mean([x * x for x in xs]) ** 0.5))),
                ("words 250k", lambda: Ranked(combine(per_lang(250_000), mean)))]
    rows, first_kept = [], None
    for name, make in rankings:
        t0 = time.perf_counter()
        kept, counts, _ = choose_kept(tok, src, texts, [], evidence=make(), size=a.size,
                                      scripts=scripts, symbols=True)
        ks = set(kept)
        first_kept = first_kept or ks
        row = {"ranking": name, "kept": len(kept), "kept_by_reason": counts,
               "seconds": round(time.perf_counter() - t0, 1)}
        for text, per in ids.items():
            row[text] = {l: sum(1 for i in v if i not in ks) / len(v) for l, v in per.items()}
        rows.append(row)
        print(f"{name}: " + "  ".join(f"{t} " + " ".join(f"{l} {row[t][l]:.2%}" for l in langs)
                                      for t in ids), file=sys.stderr, flush=True)
    missed = {}
    for l in langs:
        c = Counter(i for i in ids["unseen"][l] if i not in first_kept)
        missed[l] = [{"token": src.tokens[i], "count": n, "evidence_per_million": base_w.get(i, 0.0) * 1e6}
                     for i, n in c.most_common(15)]
    res = {"model": "gemma-3-270m", "langs": langs, "size": a.size, "unseen_domain": unseen,
           "tune_domains": tune, "rows": rows, "missed_by_frequency": missed,
              "command": "python bench/bench_vocab_ranking.py " + " ".join(argv or sys.argv[1:])}
    first_out = next((t for t in Ranked(base_w).ranked() if t not in first_kept and 0 <= t < src.size), None)
    res["threshold_per_million"] = base_w[first_out] * 1e6 if first_out is not None else None
    write_results(RESULTS, res, markdown)
    return 0


def markdown(res: dict) -> str:
    langs = res["langs"]
    tune = ", ".join(f"{l}: {d}" for l, d in res["tune_domains"].items())
    lines = [f"# Ranking the vocabulary evidence at {res['size']:,} kept tokens (Gemma 3 270M, "
             f"{', '.join(langs)})", "",
             f"Made by `{res['command']}`. Tokenizer only. Share of the untrimmed tokenizer's tokens "
             f"that the kept set lacks, on two texts no evidence here read: *tune* (eval split of a "
             f"further held-out fitting domain — {tune}) and *unseen* (eval split of "
             f"'{res['unseen_domain']}').", "",
             "| ranking | " + " | ".join(f"tune {l}" for l in langs) + " | "
             + " | ".join(f"unseen {l}" for l in langs) + " |",
             "|---|" + "---:|" * (2 * len(langs))]
    for r in res["rows"]:
        lines.append(f"| {r['ranking']} | " + " | ".join(f"{r['tune'][l]:.2%}" for l in langs) + " | "
                     + " | ".join(f"{r['unseen'][l]:.2%}" for l in langs) + " |")
    lines += ["", f"Tokens of the unseen text the frequency ranking does not keep, most frequent first "
              f"(evidence: mean share per million; the most needed token the frequency ranking leaves "
              f"out has {res['threshold_per_million']:.2f}):", ""]
    for l in langs:
        lines.append(f"- {l}: " + ", ".join(f"`{m['token']}` ×{m['count']} ({m['evidence_per_million']:.2f})"
                                           for m in res["missed_by_frequency"][l]))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

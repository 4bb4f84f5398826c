"""Kept vocabulary size → quality on text the choice never saw (issue 12's curve).

The embedded Gemma 3 270M, vocabulary trimmed for the target languages and nothing else
pruned, at several sizes (`--sizes`), with the language evidence (wordfreq + fitting text,
babel_edge.vocab.evidence) and, as the first release's rule, with the fitting text's
tokens only. Every trimmed model is scored in PyTorch (fp32) on
  unseen   the eval split of the domain held out of every choice (corpus.unseen_domain)
  eval     the in-domain eval split
— the same bytes for every model (babel_edge.evaluate) — against the untrimmed model:
bits per byte, its ratio to the untrimmed model, and token inflation (tokens per byte
relative to the untrimmed tokenizer).

    python bench/bench_vocab_curve.py [--langs en,de,fr] [--sizes 32768,49152,65536,98304]

Writes bench/results/vocab_curve_gemma3_270m.{json,md}.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

from common import add_ratios, log, run_texts, score, write_results

RESULTS = Path(__file__).resolve().parent / "results" / "vocab_curve_gemma3_270m"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--langs", default="en,de,fr")
    p.add_argument("--sizes", default="32768,49152,65536,98304")
    p.add_argument("--max-bytes", type=int, default=12000)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)

    import torch

    from babel_edge.corpus import parse_langs
    from babel_edge.models import load_model
    from babel_edge.prune.run import target_scripts
    from babel_edge.vocab import trim_loaded

    torch.set_num_threads(a.threads)
    langs = parse_langs(a.langs)
    unseen, fit, texts = run_texts(langs)
    lm = load_model(None)
    log("untrimmed")
    rows = [{"label": "untrimmed", "size": lm.model.get_input_embeddings().weight.shape[0],
             "evidence": None, **score(lm.model, lm.tokenizer, texts, a.max_bytes)}]
    configs = [("text", None)] + [("language", int(s)) for s in a.sizes.split(",")]
    for evidence, size in configs:
        log(f"trim: {evidence} evidence, size {size}")
        model = copy.deepcopy(lm.model)
        t0 = time.perf_counter()
        tv = trim_loaded(model, lm.tokenizer, langs, fit, model_dir=lm.path, evidence=evidence,
                         size=size, scripts=target_scripts(langs))
        row = {"label": f"{evidence}" + (f" {size // 1024}k" if size else ""), "size": len(tv.kept),
               "evidence": evidence, "requested": size, "seconds_trim": round(time.perf_counter() - t0, 1),
               "kept_by_reason": tv.section["kept_by_reason"],
               "evidence_coverage": tv.section.get("evidence_coverage")}
        row.update(score(model, tv.tokenizer, texts, a.max_bytes))
        rows.append(row)
        del model
    add_ratios(rows, list(texts), langs)
    res = {"model": "gemma-3-270m", "langs": langs, "unseen_domain": unseen,
           "max_bytes": a.max_bytes, "rows": rows,
           "command": "python bench/bench_vocab_curve.py " + " ".join(argv or sys.argv[1:])}
    write_results(RESULTS, res, markdown)
    return 0


def markdown(res: dict) -> str:
    langs = res["langs"]
    lines = [f"# Kept vocabulary → bits per byte (Gemma 3 270M, targets {', '.join(langs)})", "",
             f"Made by `{res['command']}`. Vocabulary trimming only (no FFN pruning), PyTorch fp32; "
             f"bits per byte on the same bytes for every model ({res['max_bytes']:,} per language "
             f"and text); ratio to the untrimmed model; token inflation = tokens / untrimmed "
             f"tokens − 1 on the same text. *unseen*: eval split of the '{res['unseen_domain']}' "
             f"domain, which no vocabulary choice read; *eval*: the in-domain eval split.", ""]
    for name in ("unseen", "eval"):
        lines += [f"## {name}", "", "| vocabulary | kept tokens | " +
                  " | ".join(f"{l} bpb (×) | {l} tokens" for l in langs) + " |",
                  "|---|---:|" + "---:|---:|" * len(langs)]
        for r in res["rows"]:
            cells = " | ".join(f"{r[name][l]['bits_per_byte']:.3f} (×{r[name][l]['ratio']:.3f}) | "
                               f"{r[name][l]['token_inflation']:+.1%}" for l in langs)
            lines.append(f"| {r['label']} | {r['size']:,} | {cells} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

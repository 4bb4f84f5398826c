"""What stands between a 64k language vocabulary and the untrimmed model on unseen text?

The embedded Gemma 3 270M, vocabulary trimmed for the target languages and nothing else
pruned, all at `--size` kept tokens, scored in PyTorch (fp32) on the eval split of the run's
unseen domain (corpus.unseen_domain: 'handbook', the Debian Administrator's Handbook, for
en/de/fr) — the same bytes for every model — against the untrimmed model:
  language          babel-edge's rule: language evidence (wordfreq + the fitting text of every
                    other domain), nothing of the unseen domain read
  oracle k          the same, but the k tokens the scored text itself most needs and the
                    rule leaves out are put first in the ranking (they push out the k least
                    needed). This reads the scored text: a diagnosis of how much of the gap a
                    handful of the domain's own tokens explain, never a method
  your text         the rule plus `--vocab-text` of the unseen domain's *profile* split (other
                    paragraphs of the same book; the scored eval paragraphs stay unread): what
                    a user whose text is of a register our evidence lacks does about it
Bits per byte, ratio to the untrimmed model, token inflation, and which tokens the oracle added.

    python bench/bench_vocab_gap.py [--langs en,de,fr] [--size 65536] [--oracle 3,10,30]

Writes bench/results/vocab_gap_gemma3_270m.{json,md}.
"""
from __future__ import annotations

import argparse
import copy
import sys
from collections import Counter
from pathlib import Path

from common import Ranked, add_ratios, log, run_texts, score, write_results

RESULTS = Path(__file__).resolve().parent / "results" / "vocab_gap_gemma3_270m"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--langs", default="en,de,fr")
    p.add_argument("--size", type=int, default=65536)
    p.add_argument("--oracle", default="3,10,30", help="how many scored-text tokens to put first")
    p.add_argument("--max-bytes", type=int, default=12000)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)

    import torch

    from babel_edge.corpus import load_corpus, parse_langs
    from babel_edge.models import load_model
    from babel_edge.prune.run import target_scripts
    from babel_edge.vocab import choose_kept, config_token_ids, source_vocab, trim_loaded
    from babel_edge.vocab.choose import _encode_many
    from babel_edge.vocab.evidence import gather
    from babel_edge.vocab.tokenizer import trim_tokenizer
    from babel_edge.vocab.model import trim_model
    from babel_edge.vocab.trim import _tokenizer_key
    from babel_edge.evaluate import scoring_units

    torch.set_num_threads(a.threads)
    langs = parse_langs(a.langs)
    corpus = load_corpus()
    unseen, fit, both = run_texts(langs)
    texts = {"unseen": both["unseen"]}
    yours = [t for l in langs for t in corpus.texts(l, "profile", domains=[unseen])]
    lm = load_model(None)
    scripts = target_scripts(langs)
    log("untrimmed")
    rows = [{"label": "untrimmed", "size": lm.model.get_input_embeddings().weight.shape[0],
             **score(lm.model, lm.tokenizer, texts, a.max_bytes)}]

    def trimmed(label: str, **kw) -> None:
        log(label)
        model = copy.deepcopy(lm.model)
        tv = trim_loaded(model, lm.tokenizer, langs, fit, model_dir=lm.path, size=a.size,
                         scripts=scripts, **kw)
        rows.append({"label": label, "size": len(tv.kept),
                     "kept_by_reason": tv.section["kept_by_reason"],
                     **score(model, tv.tokenizer, texts, a.max_bytes)})

    trimmed("language")
    trimmed("your text", user_texts=yours)

    # the oracle: what the scored text needs that the rule leaves out, most needed first
    src = source_vocab(lm.tokenizer, lm.path)
    ev = gather(lm.tokenizer, langs, fit, cache_key=_tokenizer_key(src))
    all_fit = [t for l in langs for t in fit(l)]
    kept0, _, _ = choose_kept(lm.tokenizer, src, all_fit, config_token_ids(lm.model), evidence=ev,
                              size=a.size, scripts=scripts, symbols=True)
    k0 = set(kept0)
    scored = [t for l in langs for t in scoring_units(texts["unseen"][l], a.max_bytes)]
    need = Counter(i for ids in _encode_many(lm.tokenizer, scored) for i in ids if i not in k0)
    for k in (int(x) for x in a.oracle.split(",") if x):
        first = [i for i, _ in need.most_common(k)]
        log(f"oracle {k}")
        order = first + [t for t in ev.ranked() if t not in set(first)]
        kept, counts, _ = choose_kept(lm.tokenizer, src, all_fit, config_token_ids(lm.model),
                                      evidence=Ranked(ev.weights, order, ev.sources), size=a.size,
                                      scripts=scripts, symbols=True)
        model = copy.deepcopy(lm.model)
        tok, _ = trim_tokenizer(lm.tokenizer, src, kept)
        trim_model(model, kept)
        rows.append({"label": f"oracle {k}", "size": len(kept), "kept_by_reason": counts,
                     "oracle_tokens": [src.tokens[i] for i in first],
                     "oracle_token_uses": sum(need[i] for i in first),
                     **score(model, tok, texts, a.max_bytes)})
    add_ratios(rows, ["unseen"], langs)
    res = {"model": "gemma-3-270m", "langs": langs, "unseen_domain": unseen, "size": a.size,
           "max_bytes": a.max_bytes, "your_text_paragraphs": len(yours),
           "your_text_chars": sum(len(t) for t in yours),
           "missing_token_uses": sum(need.values()), "rows": rows,
           "command": "python bench/bench_vocab_gap.py " + " ".join(argv or sys.argv[1:])}
    write_results(RESULTS, res, markdown)
    return 0


def markdown(res: dict) -> str:
    langs = res["langs"]
    lines = [f"# What a {res['size']:,}-token vocabulary lacks on unseen text (Gemma 3 270M, "
             f"targets {', '.join(langs)})", "",
             f"Made by `{res['command']}`. Vocabulary trimming only, PyTorch fp32; bits per byte on "
             f"the same bytes for every model ({res['max_bytes']:,} per language of the eval split "
             f"of '{res['unseen_domain']}': the rule read nothing of that domain, *your text* other "
             f"paragraphs of it, the oracle rows the scored text itself); ratio to the untrimmed "
             f"model; token inflation = tokens / untrimmed tokens − 1.",
             "", "- *language*: babel-edge's rule (wordfreq + fitting text of the other domains).",
             f"- *your text*: the rule plus `--vocab-text` with the '{res['unseen_domain']}' "
             f"profile split ({res['your_text_paragraphs']:,} paragraphs, "
             f"{res['your_text_chars']:,} characters; other paragraphs of the same book, the "
             f"scored ones unread).",
             f"- *oracle k*: the rule with the k tokens the scored text most needs and the rule "
             f"leaves out ranked first — reads the scored text; a diagnosis, not a method. The "
             f"rule's vocabulary misses {res['missing_token_uses']:,} token uses of the scored "
             f"text in all.", "",
             "| vocabulary | kept tokens | " + " | ".join(f"{l} bpb (×) | {l} tokens" for l in langs)
             + " |", "|---|---:|" + "---:|---:|" * len(langs)]
    for r in res["rows"]:
        cells = " | ".join(f"{r['unseen'][l]['bits_per_byte']:.3f} (×{r['unseen'][l]['ratio']:.3f}) | "
                           f"{r['unseen'][l]['token_inflation']:+.1%}" for l in langs)
        lines.append(f"| {r['label']} | {r['size']:,} | {cells} |")
    lines.append("")
    for r in res["rows"]:
        if "oracle_tokens" in r:
            lines.append(f"- {r['label']} ({r['oracle_token_uses']:,} uses): "
                         + ", ".join(f"`{t}`" for t in r["oracle_tokens"]))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

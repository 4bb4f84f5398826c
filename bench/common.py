"""What the bench scripts share: a run's texts, PyTorch scoring on them, ratios to a reference
row, a ranked-evidence stand-in, a timestamped log line. Scripts import it as `common`
(bench/ is put on sys.path by running a script from it)."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Sequence


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_texts(langs: Sequence[str]) -> tuple[str, object, dict]:
    """(unseen domain, fitting texts_for, {"unseen": ..., "eval": ...} per language): what a
    bench run fits on and the two texts it is scored on, never read by the fitting."""
    from babel_edge.corpus import load_corpus
    from babel_edge.prune.run import fitting_texts

    corpus = load_corpus()
    unseen = corpus.unseen_domain(langs)
    return unseen, fitting_texts(corpus, langs), {
        "unseen": {l: corpus.texts(l, "eval", domains=[unseen]) for l in langs},
        "eval": {l: corpus.texts(l, "eval", exclude=(unseen,)) for l in langs}}


def score(model, tokenizer, texts: dict, max_bytes: int) -> dict:
    """{text: {lang: {bits_per_byte, tokens, bytes}}}: `model` in PyTorch on each text's first
    `max_bytes` per language (babel_edge.evaluate: the same bytes whatever the tokenizer)."""
    from babel_edge.evaluate import evaluate_languages, hf_tokenize, torch_scorer

    out = {}
    for name, per_lang in texts.items():
        r = evaluate_languages(list(per_lang), per_lang.__getitem__, hf_tokenize(tokenizer),
                               torch_scorer(model), max_bytes=max_bytes, label=name)
        out[name] = {x.lang: {"bits_per_byte": x.bits_per_byte, "tokens": x.n_tokens,
                              "bytes": x.n_bytes} for x in r}
    return out


def bits_per_byte(model, tokenizer, texts: dict, max_bytes: int) -> dict:
    """{text: {lang: bits per byte}} (score, bits per byte only)."""
    return {n: {l: v["bits_per_byte"] for l, v in per.items()}
            for n, per in score(model, tokenizer, texts, max_bytes).items()}


def add_ratios(rows: list[dict], names: Sequence[str], langs: Sequence[str]) -> None:
    """Each row's score cells get `ratio` (bits per byte over the first row's) and
    `token_inflation` (tokens over the first row's, − 1); the first row is the reference."""
    base = rows[0]
    for r in rows:
        for name in names:
            for l in langs:
                x, b = r[name][l], base[name][l]
                x["ratio"] = x["bits_per_byte"] / b["bits_per_byte"]
                x["token_inflation"] = x["tokens"] / b["tokens"] - 1


class Ranked:
    """Vocabulary evidence in a given order (choose_kept reads .ranked(), .weights, .sources):
    by weight when no order is given."""

    def __init__(self, weights: dict, order: list[int] | None = None, sources: dict | None = None):
        self.weights, self.sources = weights, sources or {}
        self.order = order if order is not None else sorted(weights, key=lambda t: (-weights[t], t))

    def ranked(self) -> list[int]:
        return self.order


def write_results(base: Path, res: dict, markdown: Callable[[dict], str]) -> None:
    """res as base.json, markdown(res) as base.md (each written whole, then swapped in), and
    the Markdown printed."""
    from babel_edge.io import write_json, write_text

    md = markdown(res)
    write_json(base.with_suffix(".json"), res)
    write_text(base.with_suffix(".md"), md)
    print(md)

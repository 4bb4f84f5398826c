"""`babel-edge eval`: what a (pruned) model kept and what it gave up.

Per-language perplexity on the corpus EVAL split (never the profile split) for
every corpus language, split into the model's target languages (read from its
pruning_plan.json, if it has one) and the others, plus parameter counts (all,
FFN) and the size of the weight files.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from .evaluate import evaluate_languages, hf_tokenize, torch_scorer


def _gmean(xs: Sequence[float]) -> float | None:
    xs = list(xs)
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def evaluate_model(spec: str | None, langs: Sequence[str] | None = None, corpus: str | None = None,
                   max_tokens: int = 2048, max_len: int = 512) -> dict:
    """Score `spec` (a pruned directory, any HF directory, a .gguf or an embedded name)."""
    from .corpus import load_corpus, load_user_corpus, parse_langs
    from .models import load_model
    from .prune_io import ffn_params, file_size, read_plan

    corp = load_user_corpus(corpus) if corpus else load_corpus()
    langs = parse_langs(langs) if isinstance(langs, str) else list(langs or corp.languages())
    for lang in langs:
        corp.texts(lang, "eval")                 # fail early on a language the corpus lacks
    lm = load_model(spec)
    plan = read_plan(lm.path)
    targets = list(plan["target_langs"]) if plan else []
    results = evaluate_languages(langs, lambda l: corp.texts(l, "eval"), hf_tokenize(lm.tokenizer),
                                 torch_scorer(lm.model, pad_id=lm.tokenizer.pad_token_id or 0),
                                 max_tokens=max_tokens, max_len=max_len,
                                 label=f"perplexity of {Path(lm.path).name}")
    rows = [dict(r.to_dict(), target=r.lang in targets) for r in results]
    tgt = [r["ppl"] for r in rows if r["target"]]
    oth = [r["ppl"] for r in rows if not r["target"]]
    return {
        "model": str(lm.path), "fingerprint": lm.fingerprint, "split": "eval",
        "max_tokens": max_tokens, "max_len": max_len,
        "target_langs": targets,
        "pruning": None if plan is None else {k: plan.get(k) for k in (
            "rate", "realized_rate", "strategy", "schedule", "granularity")} |
        {"compensate": (plan.get("compensation") or {}).get("on")},
        "params": {"total": lm.n_params, "ffn": ffn_params(lm.model)},
        "file_bytes": file_size(lm.path),
        "summary": {"target_ppl_gmean": _gmean(tgt), "other_ppl_gmean": _gmean(oth)},
        "results": rows,
    }

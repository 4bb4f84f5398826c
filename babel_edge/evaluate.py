"""Per-language perplexity and bits per byte: the one evaluator (`eval`, `ppl`, bench, build).

Scoring unit: a piece of a paragraph of at most `max_len - 2` UTF-8 bytes, cut at a
sentence end or a space when the paragraph is longer (scoring_units). Every supported
tokenizer (BPE with byte fallback, byte-level BPE) turns n bytes into at most n tokens,
plus BOS and a possible dummy prefix, so no unit is ever cut by a token limit. Units are
chosen in corpus order until `max_bytes` per language, from the text alone: every model
and every tokenizer scores byte-identical text, so bits per byte (total NLL / ln 2 /
UTF-8 bytes) compare across tokenizers — a trimmed vocabulary against the dense one.
Perplexity per token is reported too (it compares only between identical tokenizers;
`tokens_per_byte` says when they differ). Each unit is one sequence, BOS + tokens;
every token after the first is predicted from its prefix.

A scorer is any function list[list[int]] -> list[float] (summed NLL of each sequence,
nats); the PyTorch one is here, the llama.cpp and onnxruntime ones live with their
engines. Tokenizing is the engine's job too, so each stack is measured end to end.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from .progress import count_progress

Scorer = Callable[[Sequence[Sequence[int]]], list[float]]
Tokenize = Callable[[str], list[int]]

DEFAULT_OTHER_LANGS = ("ru", "zh", "ar")     # non-target languages reported beside the targets
DEFAULT_MAX_BYTES = 16_000                  # text scored per language and text set
DEFAULT_MAX_LEN = 512                       # tokens per scored sequence (llama.cpp's n_batch)


@dataclass
class LangScore:
    lang: str
    n_texts: int           # scoring units
    n_tokens: int          # predicted tokens
    n_bytes: int           # UTF-8 bytes of the scored units
    nll: float             # summed negative log-likelihood, nats
    text: str = "eval"     # which text set: "eval" (in-domain) or "unseen" (held-out domain)

    @property
    def ppl(self) -> float:
        return math.exp(self.nll / max(self.n_tokens, 1))

    @property
    def bits_per_byte(self) -> float:
        return self.nll / math.log(2) / max(self.n_bytes, 1)

    @property
    def tokens_per_byte(self) -> float:
        return self.n_tokens / max(self.n_bytes, 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "ppl": self.ppl, "bits_per_byte": self.bits_per_byte,
                "tokens_per_byte": self.tokens_per_byte}


def _split(text: str, max_bytes: int) -> list[str]:
    """`text` in pieces of at most max_bytes UTF-8 bytes, cut after a sentence end or a space
    where there is one in the second half of the piece, else at a character boundary."""
    out = []
    while len(text.encode()) > max_bytes:
        cut, size = 0, 0
        for i, ch in enumerate(text):           # longest prefix within max_bytes
            size += len(ch.encode())
            if size > max_bytes:
                break
            cut = i + 1
        head = text[:cut]
        best = max(head.rfind(s) for s in (". ", "。", "! ", "? ", "؟ ", "। "))
        if best < cut // 2:
            best = head.rfind(" ")
        if best >= cut // 2:
            cut = best + 1
        piece, text = text[:cut].strip(), text[cut:].lstrip()
        if piece:
            out.append(piece)
    if text.strip():
        out.append(text.strip())
    return out


def scoring_units(texts: Sequence[str], max_bytes: int = DEFAULT_MAX_BYTES,
                  max_len: int = DEFAULT_MAX_LEN) -> list[str]:
    """The text units scored for one language: paragraphs in order, long ones split to at
    most max_len - 2 bytes, until max_bytes. Depends on the text only (never a tokenizer)."""
    unit_bytes = max(16, max_len - 2)
    out, n = [], 0
    for text in texts:
        for piece in _split(text, unit_bytes):
            out.append(piece)
            n += len(piece.encode())
            if n >= max_bytes:
                return out
    return out


def score_units(lang: str, units: Sequence[str], tokenize: Tokenize, scorer: Scorer,
                batch_size: int = 8, advance: Callable[[int], None] | None = None,
                text: str = "eval", max_len: int = DEFAULT_MAX_LEN) -> LangScore:
    seqs = [tokenize(u) for u in units]
    too_long = [len(s) for s in seqs if len(s) > max_len]
    if too_long:
        raise RuntimeError(f"a {lang} unit of <= {max_len - 2} bytes became {max(too_long)} tokens; "
                           f"the tokenizer cannot encode with byte fallback")
    keep = [(u, s) for u, s in zip(units, seqs) if len(s) >= 2]
    if not keep:
        raise ValueError(f"no scorable text for language '{lang}'")
    nll = 0.0
    # sort by length so batches carry little padding; the sum does not depend on order
    order = sorted(range(len(keep)), key=lambda i: len(keep[i][1]))
    for start in range(0, len(order), batch_size):
        batch = [keep[i][1] for i in order[start:start + batch_size]]
        nll += sum(scorer(batch))
        if advance:
            advance(sum(len(u.encode()) for u, _ in (keep[i] for i in order[start:start + batch_size])))
    return LangScore(lang, len(keep), sum(len(s) - 1 for _, s in keep),
                     sum(len(u.encode()) for u, _ in keep), nll, text)


def score_language(lang: str, texts: Sequence[str], tokenize: Tokenize, scorer: Scorer,
                   max_bytes: int = DEFAULT_MAX_BYTES, max_len: int = DEFAULT_MAX_LEN,
                   batch_size: int = 8, advance: Callable[[int], None] | None = None,
                   text: str = "eval") -> LangScore:
    return score_units(lang, scoring_units(texts, max_bytes, max_len), tokenize, scorer,
                       batch_size, advance, text, max_len)


def evaluate_languages(langs: Sequence[str], texts_for: Callable[[str], Sequence[str]],
                       tokenize: Tokenize, scorer: Scorer, max_bytes: int = DEFAULT_MAX_BYTES,
                       max_len: int = DEFAULT_MAX_LEN, batch_size: int = 8,
                       label: str = "scoring", text: str = "eval") -> list[LangScore]:
    """Score each language's units (scoring_units of texts_for(lang)); `text` names the text set."""
    units = {lang: scoring_units(texts_for(lang), max_bytes, max_len) for lang in langs}
    total = sum(len(u.encode()) for us in units.values() for u in us)
    results = []
    with count_progress(label, total=total, unit="bytes") as advance:
        for lang in langs:
            results.append(score_units(lang, units[lang], tokenize, scorer, batch_size,
                                       lambda n, lang=lang: advance(n, extra=lang), text, max_len))
    return results


def gmean(xs: Sequence[float]) -> float | None:
    xs = list(xs)
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


# ---------------------------------------------------------------- PyTorch scorer

def logits_from_hidden(model, hidden):
    """LM-head logits for hidden states [.., hidden] -> [.., vocab], with the
    family's final soft-capping where it has one (Gemma 2)."""
    import torch

    logits = model.lm_head(hidden)
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


# Positions the LM head takes at once when scoring or computing a teacher's top-k:
# [HEAD_CHUNK, vocab] fp32 logits (a 262k vocabulary: 1 GB). The head's weights are read
# once per block, so larger blocks are faster on a CPU: on the embedded model, 2 threads,
# 1024 positions run 1.5-1.8x faster than 32 (bench/results/head_chunk.md).
HEAD_CHUNK = 1024


def torch_scorer(model, pad_id: int = 0, chunk: int = HEAD_CHUNK) -> Scorer:
    """Summed NLL per sequence with a PyTorch causal LM.

    The decoder runs once on the padded batch; the LM head then runs on the real
    (unpadded) positions only, `chunk` at a time, and each position's NLL is
    logsumexp(logits) - logit(target), so no [positions, vocab] log-softmax is stored.
    """
    import torch

    decoder = model.get_decoder()

    @torch.inference_mode()
    def score(batch: Sequence[Sequence[int]]) -> list[float]:
        n = max(len(s) for s in batch)
        ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        for i, s in enumerate(batch):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        dev = next(model.parameters()).device
        hidden = decoder(input_ids=ids.to(dev), attention_mask=mask.to(dev)).last_hidden_state
        # position t predicts token t+1; padding positions are left out
        valid = mask[:, 1:].to(dev).bool()
        h = hidden[:, :-1][valid]                            # [N, H] real positions only
        target = ids[:, 1:].to(dev)[valid]                   # [N]
        rows = valid.nonzero()[:, 0]                         # [N] the sequence of each
        nll = torch.empty(len(h), dtype=torch.float64, device=dev)
        for c in range(0, len(h), chunk):
            lg = logits_from_hidden(model, h[c:c + chunk]).float()          # [c, V]
            nll[c:c + chunk] = (torch.logsumexp(lg, -1)
                                - lg.gather(-1, target[c:c + chunk, None])[:, 0]).double()
        sums = torch.zeros(len(batch), dtype=torch.float64, device=dev)
        return sums.index_add_(0, rows, nll).tolist()

    return score


def hf_tokenize(tokenizer) -> Tokenize:
    return lambda text: tokenizer(text, add_special_tokens=True)["input_ids"]


# ---------------------------------------------------------------- a model, end to end

def text_sets(corpus, langs: Sequence[str]) -> tuple[str | None, dict[str, Callable]]:
    """(unseen domain, {text set: texts_for}) for scoring `langs`: "unseen" — the eval split of
    the domain held out of every fitting step for these languages (corpus.unseen_domain; a
    language without that domain gets []) — and "eval", the in-domain eval split (the other
    domains). A corpus without domains has "eval" only."""
    unseen = corpus.unseen_domain(langs) if hasattr(corpus, "unseen_domain") else None
    if not unseen:
        return None, {"eval": lambda l: corpus.texts(l, "eval")}

    def unseen_for(l):
        return corpus.texts(l, "eval", domains=[unseen]) if unseen in corpus.domains(l) else []

    return unseen, {"unseen": unseen_for,
                    "eval": lambda l: corpus.texts(l, "eval", exclude=(unseen,))}


def _summary(rows: list[dict]) -> dict:
    return {"target_bits_per_byte_mean": _mean(r["bits_per_byte"] for r in rows if r["target"]),
            "other_bits_per_byte_mean": _mean(r["bits_per_byte"] for r in rows if not r["target"]),
            "target_ppl_gmean": gmean(r["ppl"] for r in rows if r["target"]),
            "other_ppl_gmean": gmean(r["ppl"] for r in rows if not r["target"])}


def evaluate_model(spec: str | None, langs: Sequence[str] | None = None, corpus: str | None = None,
                   max_bytes: int = DEFAULT_MAX_BYTES, max_len: int = DEFAULT_MAX_LEN,
                   engine: str | None = None, threads: int | None = None,
                   generate: bool = True) -> dict:
    """What `babel-edge eval` reports: per-language bits per byte and perplexity of `spec` (a
    pruned directory, any HF directory, the embedded name, a .gguf file or an ONNX export,
    run by `engine`: torch, llama.cpp or onnxruntime; default from what `spec` is) on two
    texts (text_sets: the unseen domain first, then the in-domain eval split), split into the
    model's target languages (from its pruning plan) and the others, plus its parameters
    (PyTorch) and file size; with `generate`, greedy continuations of fixed prompts in the
    target languages (or the first three scored) with their loop measure."""
    from .corpus import load_corpus, load_user_corpus, parse_langs
    from .prune.plan import PruningPlan
    from .runtime.engines import artefact_targets, open_engine

    corp = load_user_corpus(corpus, langs) if corpus else load_corpus()
    langs = parse_langs(langs, corp) if langs else corp.languages()
    for lang in langs:
        corp.texts(lang, "eval")                 # a language the corpus lacks fails here
    eng = open_engine(spec, engine, n_ctx=max_len + 16, threads=threads)
    try:
        targets = artefact_targets(eng)
        unseen, sets = text_sets(corp, targets or langs)
        rows = []
        for name, texts_for in sets.items():
            have = [l for l in langs if texts_for(l)]
            for r in evaluate_languages(have, texts_for, eng.tokenize, eng.score,
                                        max_bytes=max_bytes, max_len=max_len, text=name,
                                        label=f"{name}: {eng.name} ({eng.backend})"):
                rows.append(dict(r.to_dict(), target=r.lang in targets))
        report = {
            "model": str(eng.path), "engine": eng.backend, "unseen_domain": unseen,
            "texts": list(sets), "max_bytes": max_bytes, "max_len": max_len,
            "target_langs": targets, "results": rows,
            "summary": {name: _summary([r for r in rows if r["text"] == name]) for name in sets},
            **eng.describe(),
        }
        if generate:
            report["generation"] = generation_checks(eng, targets or langs[:3])
        plan = PruningPlan.read(eng.path) if Path(eng.path).is_dir() else None
        if plan is not None:
            report["pruning"] = {"rate": plan.rate, "realized_rate": round(plan.realized_rate, 6),
                                 "strategy": plan.strategy, "schedule": plan.schedule,
                                 "granularity": plan.granularity,
                                 "compensate": bool(plan.compensation.get("on")),
                                 "vocab_kept": plan.vocab["kept"] if plan.vocab_trimmed else None,
                                 "healed": bool(plan.healing)}
    finally:
        eng.close()
    return report


def _mean(xs) -> float | None:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else None


def default_report_path(model_path: str | Path, spec: str | None) -> Path:
    """eval.json next to a model directory the user named (e.g. a pruned model) when it is
    writable; else eval-<name>.json in the working directory."""
    import os

    d = Path(model_path)
    if spec and Path(spec).expanduser().is_dir() and os.access(d, os.W_OK):
        return d / "eval.json"
    return Path(f"eval-{d.name}.json")


# ---------------------------------------------------------------- generation sanity

# Per language: a prompt whose greedy continuation a working model gets right (the answer
# any continuation must contain), and a story opening to see whether text flows or loops.
# The counting prompt is the same in every language.
CAPITALS = {
    "en": ("The capital of France is", "Paris"), "de": ("Die Hauptstadt von Frankreich ist", "Paris"),
    "fr": ("La capitale de la France est", "Paris"), "es": ("La capital de Francia es", "París"),
    "it": ("La capitale della Francia è", "Parigi"), "pt": ("A capital da França é", "Paris"),
    "ru": ("Столица Франции —", "Париж"), "pl": ("Stolicą Francji jest", "Paryż"),
    "zh": ("法国的首都是", "巴黎"), "ja": ("フランスの首都は", "パリ"),
    "ar": ("عاصمة فرنسا هي", "باريس"), "nl": ("De hoofdstad van Frankrijk is", "Parijs"),
}
STORIES = {
    "en": "Once upon a time,", "de": "Es war einmal", "fr": "Il était une fois",
    "es": "Había una vez", "it": "C'era una volta", "pt": "Era uma vez", "ru": "Жили-были",
    "pl": "Dawno, dawno temu", "zh": "从前，", "ja": "昔々、", "ar": "كان يا ما كان", "nl": "Er was eens",
}
COUNTING = ("1, 2, 3, 4,", "5, 6")


def repeated_ngram_share(ids, n: int = 4) -> float:
    """Share of the n-grams of `ids` that already occurred earlier in `ids` (0: no loop)."""
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    seen, rep = set(), 0
    for g in grams:
        rep += g in seen
        seen.add(g)
    return rep / len(grams) if grams else 0.0


def generation_checks(engine, langs: Sequence[str], max_new_tokens: int = 32) -> dict:
    """Greedy continuations of fixed prompts per language (counting, a capital, a story
    opening), each with its repeated-4-gram share and, where there is one, whether it contains
    the expected answer."""
    from .corpus import get_language

    out = {}
    for lang in langs:
        base = get_language(lang).code.split("-")[0]
        prompts = [("counting", COUNTING[0], COUNTING[1])]
        if base in CAPITALS:
            prompts.append(("capital", *CAPITALS[base]))
        if base in STORIES:
            prompts.append(("story", STORIES[base], None))
        rows = []
        for kind, prompt, expect in prompts:
            ids = list(engine.generate(engine.tokenize(prompt), max_new_tokens, temperature=0.0))
            ids = [i for i in ids if i not in engine.eos_ids]
            text = engine.detokenize(ids)
            rows.append({"kind": kind, "prompt": prompt, "continuation": text,
                         "repeated_4gram_share": round(repeated_ngram_share(ids), 4),
                         "expected": expect, "correct": None if expect is None else expect in text})
        out[lang] = rows
    return out

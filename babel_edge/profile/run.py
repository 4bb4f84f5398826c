"""The profile run: scan the text, split the FFNs into experts, record every language
(resuming finished ones), and assemble the Profile with its header."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch

from .. import __version__
from ..errors import UserError
from ..experts import METHODS, ExpertMap, build_expert_map, coactivation_split, random_split
from ..models.adapters import ffn_layers
from ..progress import count_progress, status
from ..provenance import now_utc
from .data import (_FIELDS, ACTIVATION, DEFAULT_MIN_TOKENS, DEFAULT_TOKENS_PER_LANG, FORMAT,
                   FORMAT_VERSION, LangStats, Profile, top_k_for)
from .record import (_count, iter_batches, iter_sequences, make_batches, record_coactivation,
                     record_language)
from .store import _load_partial, _save_partial

def _special_ids(tokenizer) -> set[int]:
    return set(int(i) for i in (tokenizer.all_special_ids or []))


def _tokenize(tokenizer) -> Callable[[str], list[int]]:
    return lambda text: tokenizer(text, add_special_tokens=True)["input_ids"]


def _scan(seqs: Iterable[Sequence[int]], special_ids: set[int]) -> tuple[str, int, int]:
    """(digest, counted tokens, sequences) of a language's sequences, without keeping them."""
    h = hashlib.sha256()
    n = m = 0
    for q in seqs:
        h.update(json.dumps(q).encode())
        n += sum(t not in special_ids for t in q)
        m += 1
    return h.hexdigest()[:16], n, m


def _language_meta(code: str) -> dict:
    try:
        from ..corpus import get_language

        lang = get_language(code)
        return {"code": code, "name": lang.name, "family": lang.family,
                "branch": getattr(lang, "branch", None), "script": lang.script}
    except Exception:  # a user corpus may use codes the registry does not know
        return {"code": code, "name": code, "family": None, "branch": None, "script": None}


def check_settings(langs, tokens_per_lang, min_tokens, top_k_share, batch_size, max_len,
                   split) -> None:
    if not langs:
        raise UserError("no languages to profile; give --langs (e.g. --langs en,de,fr)")
    if tokens_per_lang < 1 or min_tokens < 1:
        raise UserError("--tokens-per-lang must be a positive number of tokens")
    if not 0 < top_k_share <= 1:
        raise UserError(f"--top-k-share must be in (0, 1], not {top_k_share}")
    if batch_size < 1 or max_len < 2:
        raise UserError("--batch-size must be at least 1 and --max-len at least 2")
    if split not in METHODS:
        raise UserError(f"unknown expert split '{split}'; choose one of {', '.join(METHODS)}")


def scan_languages(langs, sequences: Callable[[str], Iterable[Sequence[int]]], special: set[int],
                   tokens_per_lang: int, min_tokens: int,
                   warn: Callable[[str], None] | None) -> dict[str, tuple[str, int, int]]:
    """(digest, counted tokens, sequences) per language, before any compute, so a language
    with too little text fails at once. The sequences are made again while recording
    (tokenizing is cheap), so memory stays flat whatever --tokens-per-lang is."""
    scanned, short, partial = {}, [], []
    for lang in langs:
        scanned[lang] = _scan(sequences(lang), special)
        n = scanned[lang][1]
        if n < min(min_tokens, tokens_per_lang):
            short.append(f"{lang} ({n:,})")
        elif n < tokens_per_lang:
            partial.append(f"{lang} {n:,}")
    if partial and warn:
        warn(f"{len(partial)} languages have fewer than {tokens_per_lang:,} tokens of text and are "
             f"profiled on all they have: {', '.join(partial)}")
    if short:
        raise UserError(f"too few tokens of text for {', '.join(short)}: at least "
                        f"{min(min_tokens, tokens_per_lang):,} are needed; add text with --corpus, "
                        f"leave these languages out, or lower --min-tokens")
    return scanned


def expert_maps(model, split: str, expert_size: int, seed: int,
                sample: Callable[[], list[list[int]]], batch: Callable[[list], list],
                special: set[int]) -> tuple[ExpertMap, ExpertMap]:
    """The expert split, and the seeded random split recorded alongside as the baseline."""
    widths = [v.width for v in ffn_layers(model)]
    if split == "coactivation":
        seqs = sample()
        from .. import distributed as dd

        with status(f"recording co-activations on {_count(seqs, special):,} tokens"):
            coact = record_coactivation(model, list(dd.shard(batch(seqs))), widths)
            dd.all_reduce_(coact)
        emap = coactivation_split(coact, expert_size, seed)
    else:
        emap = build_expert_map(model, expert_size, split, seed)
    baseline = emap if split == "random" else random_split(widths, expert_size, seed + 1)
    return emap, baseline


def record_languages(model, langs, scanned, batches_for: Callable[[str], Iterator],
                     emap: ExpertMap, baseline: ExpertMap, top_k_share: float,
                     part: Path | None, run_key: dict) -> tuple[dict[str, LangStats], list[str], float]:
    """Every language's LangStats; languages finished by an interrupted run (same settings,
    same text) are read back from `part`. Returns (stats, recorded languages, seconds).
    Under torchrun, each rank records its share of the batches (batches_for shards them: the
    same batches a single process makes, batch i to rank i mod world, so per-batch sums are
    bit for bit those of one process) and the counts and sums are added up across ranks
    before anything is saved (rank 0 saves)."""
    from .. import distributed as dd

    stats: dict[str, LangStats] = {}
    todo = []
    for lang in langs:
        s = _load_partial(part, lang, run_key, scanned[lang][0]) if part else None
        if s is not None:
            stats[lang] = s
        else:
            todo.append(lang)
    total = sum(scanned[lang][1] for lang in todo)
    t0 = time.perf_counter()
    with count_progress(f"profiling {len(todo)} languages", total=total, unit="tokens") as advance:
        done = [0]
        for lang in todo:
            def adv(n: int, lang=lang) -> None:
                n *= dd.world()                      # every rank reads about as much
                done[0] += n
                rate = done[0] / max(time.perf_counter() - t0, 1e-9)
                advance(n, extra=f"{lang}  {rate:,.0f} tok/s")

            st = record_language(model, batches_for(lang), emap, baseline, top_k_share, adv)
            dd.all_reduce_([t for name in _FIELDS for t in getattr(st, name)])
            st.tokens = dd.all_reduce_int(st.tokens)
            stats[lang] = st
            if part and dd.is_main():
                _save_partial(part, lang, run_key, scanned[lang][0], stats[lang])
    return stats, todo, time.perf_counter() - t0


def profile_model(lm, langs: Sequence[str], texts_for: Callable[[str], Sequence[str]], *,
                  tokens_per_lang: int = DEFAULT_TOKENS_PER_LANG,
                  min_tokens: int = DEFAULT_MIN_TOKENS, expert_size: int = 32,
                  split: str = "kmeans", top_k_share: float = 0.25, batch_size: int = 32,
                  max_len: int = 256, seed: int = 0, corpus: str = "built-in",
                  partial_dir: str | Path | None = None, coact_tokens: int = 8192,
                  language_extra: dict[str, dict] | None = None,
                  warn: Callable[[str], None] | None = None) -> Profile:
    """Profile `langs` on a LoadedModel-like `lm` (model, tokenizer, spec, arch, family,
    fingerprint). Every language gets up to `tokens_per_lang` counted tokens from
    texts_for(lang); fewer than `min_tokens` is refused. With `partial_dir`, each
    finished language is saved there and reused by a rerun with the same settings.
    `language_extra` adds fields to a language's header entry (e.g. the corpus source)."""
    check_settings(langs, tokens_per_lang, min_tokens, top_k_share, batch_size, max_len, split)
    model, tokenizer = lm.model, lm.tokenizer
    special = _special_ids(tokenizer)
    tokenize = _tokenize(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def sequences(lang: str, n_tokens: int = tokens_per_lang) -> Iterator[list[int]]:
        return iter_sequences(texts_for(lang), tokenize, n_tokens, max_len, special)

    scanned = scan_languages(langs, sequences, special, tokens_per_lang, min_tokens, warn)
    per_lang = max(64, coact_tokens // len(langs))
    emap, baseline = expert_maps(
        model, split, expert_size, seed,
        sample=lambda: [q for lang in langs for q in sequences(lang, per_lang)],
        batch=lambda seqs: make_batches(seqs, batch_size, pad_id, special), special=special)
    run_key = {"fingerprint": lm.fingerprint, "experts": emap.digest(), "baseline": baseline.digest(),
               "top_k_share": top_k_share, "version": FORMAT_VERSION,
               "dtype": str(next(model.parameters()).dtype)}
    from .. import distributed as dd

    stats, todo, seconds = record_languages(
        model, langs, scanned,
        lambda lang: dd.shard(iter_batches(sequences(lang), batch_size, pad_id, special)),
        emap, baseline, top_k_share, Path(partial_dir) if partial_dir else None, run_key)
    widths = emap.widths()
    header = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "babel_edge_version": __version__,
        "created": now_utc(),
        "model": {"name": str(lm.spec), "fingerprint": lm.fingerprint, "arch": lm.arch,
                  "family": lm.family, "n_layers": len(widths), "widths": widths},
        "experts": emap.meta(), "baseline_experts": baseline.meta(),
        "activation": dict(ACTIVATION, top_k_share=top_k_share,
                           top_k=[top_k_for(emap.n_experts(i), top_k_share)
                                  for i in range(emap.n_layers)]),
        "languages": [dict(_language_meta(lang), **(language_extra or {}).get(lang, {}),
                           tokens=stats[lang].tokens,
                           sequences=scanned[lang][2]) for lang in langs],
        "run": {"corpus": corpus, "split": "profile", "tokens_per_lang": tokens_per_lang,
                "processes": dd.world(),
                "min_tokens": min_tokens, "max_len": max_len, "batch_size": batch_size,
                "seed": seed, "seconds_recording": round(seconds, 2),
                "tokens_recorded": sum(scanned[lang][1] for lang in todo),
                "languages_resumed": [lang for lang in langs if lang not in todo]},
    }
    return _assemble(header, list(langs), [stats[lang] for lang in langs], emap, baseline)


def _assemble(header, langs, stats: Sequence[LangStats], emap, baseline) -> Profile:
    stack = lambda name, i: torch.stack([getattr(s, name)[i] for s in stats])  # noqa: E731
    L = emap.n_layers
    return Profile(header, langs, torch.tensor([s.tokens for s in stats], dtype=torch.long),
                   emap, baseline, *[[stack(name, i) for i in range(L)] for name in _FIELDS])

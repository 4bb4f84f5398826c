"""How often each token is needed by a language at large: the evidence the kept vocabulary is
ranked by.

Per target language, a token's weight is its estimated share of the tokens of that
language's text, from two kinds of evidence (each normalised to sum to 1, then averaged):
  words    `wordfreq`'s word frequencies (Wikipedia, subtitles, news, books, web, social
           media; ~40 languages): every word is tokenized as it appears in running text —
           after a space, capitalised, at a line start, in capitals (shares WORD_FORMS) —
           and its frequency is spread over the tokens it becomes
  text     the tokens of the language's fitting text (the corpus's profile split across its
           domains, and the user's text), counted
Languages wordfreq lacks use the text alone; the result says which evidence each
language had. Target languages weigh equally. Deterministic; word tokenizations are
cached per tokenizer under <cache>/vocab-evidence/.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Sequence

# how a word from wordfreq's (lowercased) list appears in running text: after a space,
# capitalised (sentence starts, names), at a line start, and in capitals (acronyms:
# wordfreq folds case, so "IP", "BIOS" are only reachable this way)
WORD_FORMS = ((" {w}", 0.70), (" {W}", 0.18), ("{w}", 0.04), ("{W}", 0.04), (" {U}", 0.04))
WORDFREQ_LIST = "best"
# The most frequent words taken per language: 100k cover 97.4% (de) to 99.7% (ja) of
# wordfreq's word mass for en/de/fr/ja/zh; the rest adds nothing measurable to a ranking.
WORDFREQ_TOP = 100_000


@dataclass
class Evidence:
    weights: dict[int, float]                     # token id -> mean share over the languages
    per_lang: dict[str, dict[int, float]] = field(repr=False, default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)   # lang -> evidence used

    def ranked(self) -> list[int]:
        """Token ids, most needed first (ties by id)."""
        return sorted(self.weights, key=lambda t: (-self.weights[t], t))


def wordfreq_language(lang: str) -> str | None:
    """The wordfreq code for a language tag (None when wordfreq has no list for it)."""
    try:
        import wordfreq
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    have = wordfreq.available_languages(wordlist=WORDFREQ_LIST)
    base = lang.split("-")[0].lower()
    for cand in (lang.lower(), base):
        if cand in have:
            return cand
    return None


def _normalise(c: Counter) -> dict[int, float]:
    tot = sum(c.values())
    return {t: v / tot for t, v in c.items()} if tot else {}


def text_counts(tokenizer, texts: Sequence[str], chunk: int = 512) -> Counter:
    c: Counter = Counter()
    for s in range(0, len(texts), chunk):
        for ids in tokenizer(list(texts[s:s + chunk]), add_special_tokens=False)["input_ids"]:
            c.update(ids)
    return c


def word_counts(tokenizer, lang: str, cache_key: str | None = None,
                top: int = WORDFREQ_TOP) -> Counter:
    """wordfreq's `top` words of `lang` spread over their tokens, as frequency mass (cached)."""
    import wordfreq

    from ..models import cache_dir

    path = None
    if cache_key:
        h = hashlib.sha256(f"{cache_key}|{lang}|{WORD_FORMS}|{WORDFREQ_LIST}|{top}"
                           .encode()).hexdigest()[:16]
        path = cache_dir() / "vocab-evidence" / f"{lang}-{h}.json"
        if path.exists():
            return Counter({int(k): v for k, v in json.loads(path.read_text()).items()})
    freqs = sorted(wordfreq.get_frequency_dict(lang, wordlist=WORDFREQ_LIST).items(),
                   key=lambda wf: (-wf[1], wf[0]))[:top]
    c: Counter = Counter()
    for form, share in WORD_FORMS:
        texts = [form.format(w=w, W=w[:1].upper() + w[1:], U=w.upper()) for w, _ in freqs]
        for s in range(0, len(texts), 4096):
            enc = tokenizer(texts[s:s + 4096], add_special_tokens=False)["input_ids"]
            for ids, (_, f) in zip(enc, freqs[s:s + 4096]):
                for t in ids:
                    c[t] += f * share
    if path is not None:
        from ..io import write_json

        write_json(path, {str(k): v for k, v in c.items()}, indent=None)
    return c


def gather(tokenizer, langs: Sequence[str], texts_for: Callable[[str], Sequence[str]],
           user_texts: Sequence[str] = (), use_wordfreq: bool = True,
           cache_key: str | None = None, words_top: int = WORDFREQ_TOP) -> Evidence:
    """Evidence for `langs` (each weighted equally); user text counts as text of every language."""
    per_lang, sources = {}, {}
    user = text_counts(tokenizer, list(user_texts)) if user_texts else Counter()
    for lang in langs:
        parts, src = [], []
        texts = list(texts_for(lang))
        c = text_counts(tokenizer, texts) + user
        if c:
            parts.append(_normalise(c))
            src.append(f"text ({len(texts):,} paragraphs" + (", user text" if user else "") + ")")
        wf = wordfreq_language(lang) if use_wordfreq else None
        if wf:
            parts.append(_normalise(word_counts(tokenizer, wf, cache_key, words_top)))
            src.append(f"wordfreq '{wf}' ({WORDFREQ_LIST} list, top {words_top:,} words)")
        merged: Counter = Counter()
        for p in parts:
            for t, v in p.items():
                merged[t] += v / len(parts)
        per_lang[lang], sources[lang] = dict(merged), src
    weights: Counter = Counter()
    for d in per_lang.values():
        for t, v in d.items():
            weights[t] += v / len(per_lang)
    return Evidence(dict(weights), per_lang, sources)

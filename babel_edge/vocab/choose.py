"""Which token ids a trimmed vocabulary keeps, and why (see babel_edge.vocab for the rule)."""
from __future__ import annotations

from typing import Iterable, Sequence

from .source import SPM, SourceVocab


REASONS = ("special", "bytes", "chat", "text", "merges", "chars", "config")
CONFIG_ID_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id",
                  "decoder_start_token_id", "sep_token_id")
CHAT_SAMPLE = [{"role": "system", "content": "Be brief."},
               {"role": "user", "content": "Hello! How are you?"},
               {"role": "assistant", "content": "Fine, thanks."},
               {"role": "user", "content": "Tell me more."}]


def merge_steps(text: str, ranks: dict[tuple[str, str], int], vocab: dict[str, int],
                byte_fallback: bool) -> tuple[list[str], list[tuple[str, str]]]:
    """Hugging Face BPE on one word: (final symbols, merges applied in order).
    Lowest rank first, leftmost on ties; characters outside the vocabulary become
    byte-fallback tokens (which take part in no merge) or stop the replay."""
    syms: list[str] = []
    for ch in text:
        if ch in vocab:
            syms.append(ch)
        elif byte_fallback:
            syms.extend(f"<0x{b:02X}>" for b in ch.encode())
        else:
            return [], []
    steps = []
    while len(syms) > 1:
        best, at = None, -1
        for i in range(len(syms) - 1):
            r = ranks.get((syms[i], syms[i + 1]))
            if r is not None and (best is None or r < best):
                best, at = r, i
        if best is None:
            break
        a, b = syms[at], syms[at + 1]
        steps.append((a, b))
        syms[at:at + 2] = [a + b]
    return syms, steps


def _encode_many(tokenizer, texts: Sequence[str], chunk: int = 512) -> list[list[int]]:
    out = []
    for s in range(0, len(texts), chunk):
        out += tokenizer(list(texts[s:s + chunk]), add_special_tokens=False)["input_ids"]
    return out


def _chat_text(tokenizer) -> str:
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str) or not template:
        return ""
    for msgs in (CHAT_SAMPLE, CHAT_SAMPLE[1:]):        # some templates refuse a system turn
        try:
            return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        except Exception:  # noqa: BLE001 - a template that raises: try without the system turn
            continue
    return ""


def choose_kept(tokenizer, src: SourceVocab, texts: Sequence[str],
                config_ids: Iterable[int] = ()) -> tuple[list[int], dict[str, int], dict]:
    """(sorted kept old ids, kept count by first reason, details) for `texts`."""
    vocab = {t: i for i, t in enumerate(src.tokens)}
    reason: dict[int, str] = {}

    def keep(ids: Iterable[int], why: str) -> None:
        for i in ids:
            if 0 <= i < src.size:
                reason.setdefault(int(i), why)

    keep(sorted(src.added), "special")
    keep([i for i in getattr(tokenizer, "all_special_ids", []) if i is not None], "special")
    keep(src.byte_ids, "bytes")
    keep(config_ids, "config")
    chat = _chat_text(tokenizer)
    chat_ids = set(_encode_many(tokenizer, [chat])[0]) if chat else set()
    keep(sorted(chat_ids), "chat")
    text_ids: set[int] = set(chat_ids)
    for ids in _encode_many(tokenizer, list(texts)):
        text_ids.update(ids)
    keep(sorted(text_ids), "text")

    ranks: dict[tuple[str, str], int] = {}
    for r, pair in enumerate(src.merges):
        ranks.setdefault(pair, r)
    fallback = src.kind == SPM
    skip = src.added | set(src.byte_ids)
    unreached = 0
    for i in sorted(text_ids - skip):
        final, steps = merge_steps(src.tokens[i], ranks, vocab, fallback)
        if final != [src.tokens[i]]:
            unreached += 1                 # a token BPE does not rebuild from its own text
        for a, b in steps:
            keep([vocab[a], vocab[b], vocab[a + b]], "merges")
    if src.kind == SPM:
        for i in sorted(reason):
            if i not in skip and len(src.tokens[i]) > 1:
                keep([vocab[c] for c in src.tokens[i] if c in vocab], "chars")
    kept = sorted(reason)
    counts = {r: sum(1 for i in kept if reason[i] == r) for r in REASONS}
    return kept, counts, {"text_tokens": len(text_ids), "unreached_by_own_text": unreached,
                          "chat_template_tokens": len(chat_ids)}


def config_token_ids(model) -> list[int]:
    out = []
    for cfg in (model.config, getattr(model, "generation_config", None)):
        for key in CONFIG_ID_KEYS:
            v = getattr(cfg, key, None) if cfg is not None else None
            out += [x for x in (v if isinstance(v, list) else [v]) if isinstance(x, int) and x >= 0]
    return out

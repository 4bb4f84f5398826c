"""Which token ids a trimmed vocabulary keeps, and why (see babel_edge.vocab for the rule)."""
from __future__ import annotations

import re
import unicodedata
from typing import Iterable, Sequence

import regex

from .source import SPM, SourceVocab


REASONS = ("special", "bytes", "config", "chat", "symbols", "script", "text", "words", "merges",
           "chars")
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


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: printable stand-in character -> byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def surfaces(src: SourceVocab) -> list[str | None]:
    """Each token's text as it appears in running text (None for added/byte tokens and for
    byte-level tokens that are not whole UTF-8 text)."""
    skip = src.added | set(src.byte_ids)
    if src.kind == SPM:
        return [None if i in skip else t.replace("▁", " ") for i, t in enumerate(src.tokens)]
    dec = _byte_decoder()
    out: list[str | None] = []
    for i, t in enumerate(src.tokens):
        if i in src.added:
            out.append(None)
            continue
        try:
            out.append(bytes(dec[c] for c in t).decode("utf-8"))
        except (KeyError, UnicodeDecodeError):
            out.append(None)
    return out


def letter_free(text: str) -> bool:
    """No letter at all: punctuation, digits, symbols, whitespace runs."""
    return bool(text) and not any(unicodedata.category(c).startswith("L") for c in text)


# Unicode's script property: Common (punctuation, symbols, ASCII digits, whitespace) and
# Inherited (combining marks that take the script of their base letter)
_COMMON_SCRIPT = regex.compile(r"[\p{Script=Common}\p{Script=Inherited}]+")


def common_symbols(text: str) -> bool:
    """Letter-free, made of characters below U+2400 (ASCII, Latin-1 and general punctuation,
    currency, arrows, mathematical and technical symbols, digits, whitespace) that belong to
    no particular script: what text in any language may hold. Emoji and the digits and signs
    of one script (Bengali digits, Devanagari signs, Arabic-Indic digits: ~800 of Gemma's
    letter-free tokens) compete on evidence instead; a target script's single characters are
    kept by the script rule."""
    return letter_free(text) and all(ord(c) < 0x2400 for c in text) \
        and bool(_COMMON_SCRIPT.fullmatch(text))


UNUSED = re.compile(r"<unused\d+>")     # reserved placeholder tokens (Gemma has 6,242)


# ISO 15924 codes whose characters Unicode names differently from the script's English name
_SCRIPT_PREFIXES = {
    "Hans": ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH"),
    "Hant": ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH"),
    "Hani": ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH"),
    "Jpan": ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH", "HIRAGANA", "KATAKANA"),
    "Kore": ("HANGUL", "CJK UNIFIED IDEOGRAPH"),
    "Hang": ("HANGUL",),
    # English script names, as older language tables spell them
    "Han": ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH"),
    "Japanese": ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH", "HIRAGANA", "KATAKANA"),
}


def script_prefixes(script: str) -> tuple[str, ...]:
    """Unicode character-name prefixes of an ISO 15924 script ("Latn" -> ("LATIN",))."""
    if script in _SCRIPT_PREFIXES:
        return _SCRIPT_PREFIXES[script]
    try:
        import langcodes

        name = langcodes.Language.get(f"und-{script}").script_name()
    except Exception:  # noqa: BLE001 - an unknown code: take it as a name
        name = script
    return (name.upper(),) if name else ()


def in_scripts(ch: str, prefixes: Sequence[str]) -> bool:
    name = unicodedata.name(ch, "")
    return any(name.startswith(p) for p in prefixes)


def choose_kept(tokenizer, src: SourceVocab, texts: Sequence[str],
                config_ids: Iterable[int] = (), *, evidence=None, size: int | None = None,
                scripts: Sequence[str] = (), symbols: bool = False
                ) -> tuple[list[int], dict[str, int], dict]:
    """(sorted kept old ids, kept count by first reason, details).

    Always kept: added/special tokens (with `symbols`, reserved `<unusedN>` placeholders are
    not), the byte tokens, config ids and chat-template tokens; with `symbols` every common
    letter-free token (common_symbols: punctuation, digits, whitespace runs of no particular
    script); every single-character token of the target `scripts` (ISO 15924). Then, without
    `evidence`: every token of `texts`. With `evidence` (evidence.Evidence): tokens in order of
    how much the target languages need them, each with what it takes to build it (its BPE
    merges), until `size` tokens in all (every token with evidence when size is None). Every kept token
    brings its merge parts and results, and (SentencePiece) its single characters."""
    vocab = {t: i for i, t in enumerate(src.tokens)}
    reason: dict[int, str] = {}

    def keep(ids: Iterable[int], why: str) -> None:
        for i in ids:
            if 0 <= i < src.size:
                reason.setdefault(int(i), why)

    ranks: dict[tuple[str, str], int] = {}
    for r, pair in enumerate(src.merges):
        ranks.setdefault(pair, r)
    skip = src.added | set(src.byte_ids)
    unreached = [0]

    def closure(i: int) -> set[int]:
        """i, the merges that build it, and (SentencePiece) its single characters."""
        if i in skip:
            return {i}
        out = {i}
        final, steps = merge_steps(src.tokens[i], ranks, vocab, src.kind == SPM)
        if final != [src.tokens[i]]:
            unreached[0] += 1              # a token BPE does not rebuild from its own text
        for a, b in steps:
            out |= {vocab[a], vocab[b], vocab[a + b]}
        if src.kind == SPM:
            out |= {vocab[c] for t in list(out) for c in src.tokens[t] if c in vocab and len(src.tokens[t]) > 1}
        return out

    def keep_closed(ids: Iterable[int], why: str) -> None:
        for i in ids:
            if i not in reason:
                keep([i], why)
                extra = closure(i) - {i}
                keep(sorted(t for t in extra if len(src.tokens[t]) > 1), "merges")
                keep(sorted(extra), "chars")

    special_ids = {i for i in getattr(tokenizer, "all_special_ids", []) if i is not None}
    unused = {i for i in src.added if UNUSED.fullmatch(src.tokens[i])} - special_ids \
        - set(config_ids) if symbols else set()
    keep(sorted(src.added - unused), "special")
    keep(sorted(special_ids), "special")
    keep(src.byte_ids, "bytes")
    keep(config_ids, "config")
    chat = _chat_text(tokenizer)
    chat_ids = set(_encode_many(tokenizer, [chat])[0]) if chat else set()
    keep_closed(sorted(chat_ids), "chat")
    surf = surfaces(src) if (symbols or scripts) else []
    if symbols:
        keep_closed([i for i, t in enumerate(surf) if t is not None and common_symbols(t)], "symbols")
    if scripts:
        pre = tuple(p for s in scripts for p in script_prefixes(s))
        keep_closed([i for i, t in enumerate(surf) if t is not None and len(t.strip()) == 1
                     and in_scripts(t.strip(), pre)], "script")
    text_ids: set[int] = set()
    for ids in _encode_many(tokenizer, list(texts)):
        text_ids.update(ids)
    covered = None
    if evidence is None:
        keep_closed(sorted(text_ids), "text")
    else:
        if size is not None and size < len(reason):
            from ..errors import UserError

            raise UserError(f"--vocab-size {size:,} is below the {len(reason):,} tokens every trimmed "
                            f"vocabulary keeps (special, bytes, chat, symbols, script characters); "
                            f"give at least that")
        for i in evidence.ranked():
            if size is not None and len(reason) >= size:
                break
            if i in reason or i in unused or not 0 <= i < src.size:
                continue
            new = {t for t in closure(i) if t not in reason}     # (reason: a dict; no copy per token)
            if size is not None and len(reason) + len(new) > size:
                continue
            keep([i], "text" if i in text_ids else "words")
            keep(sorted(t for t in new - {i} if len(src.tokens[t]) > 1), "merges")
            keep(sorted(new - {i}), "chars")
        covered = sum(evidence.weights.get(i, 0.0) for i in reason)
    kept = sorted(reason)
    counts = {r: sum(1 for i in kept if reason[i] == r) for r in REASONS}
    details = {"text_tokens": len(text_ids), "unreached_by_own_text": unreached[0],
               "chat_template_tokens": len(chat_ids), "unused_placeholders_dropped": len(unused)}
    if covered is not None:
        details["evidence_coverage"] = covered
        details["evidence_sources"] = evidence.sources
    return kept, counts, details


def config_token_ids(model) -> list[int]:
    out = []
    for cfg in (model.config, getattr(model, "generation_config", None)):
        for key in CONFIG_ID_KEYS:
            v = getattr(cfg, key, None) if cfg is not None else None
            out += [x for x in (v if isinstance(v, list) else [v]) if isinstance(x, int) and x >= 0]
    return out

"""Language-aware vocabulary trimming: keep only the tokens the target languages need.

On multilingual models the embedding and output head dominate: Gemma 3 270M's tied
262,144 x 640 embedding holds 168M of its 268M parameters (the FFN 71M). A model that
serves {en, de, fr} needs a small share of those rows.

    trim_loaded(model, tokenizer, langs, texts_for, ...) -> TrimmedVocab   (model changed in place)
        choose_kept      which token ids stay, and why
        trim_tokenizer   the same kind of tokenizer over the kept tokens, ids renumbered
        trim_model       the embedding (and an untied head) gathered to the kept rows
        parity           same text -> same ids (mapped) and same logits over kept tokens
        tokenization_report   eval split: unchanged paragraphs, kept-token share, round trips

The kept set, and why it is exact. BPE encodes a word by merging, again and again, the
adjacent pair of highest priority (Hugging Face: lowest merge rank; llama.cpp's
SentencePiece BPE: highest score of the merged piece; ties: leftmost) until none
applies. Drop tokens, and with them every merge whose parts or result are dropped: at
every step the trimmed tokenizer's candidate pairs are a subset of the original's, in
the same order. So while the pair the original picks is still there it is still the
best one, and by induction the trimmed tokenizer takes exactly the original's steps on
every text whose applied merges (both parts and the result) are all kept. The merges
that build one output token all happen inside its span, and they are exactly the
steps BPE takes on that token's text alone (each of them was the best in-span pair
when it was taken), so replaying BPE on the text of every produced token finds every
piece formed on the way. Kept:
  text      every token the original tokenizer produces on the target languages' text
            (the corpus's whole profile split) and on the user's text
  merges    the parts and results of the merges that build those tokens (replayed BPE)
  chars     (SentencePiece) every single-character token inside a kept token: llama.cpp
            merges any adjacent symbols whose concatenation is a token, Hugging Face only
            listed pairs of tokens; with every character of a kept token kept, both see
            the same candidate pairs on any text, so they still agree off the targets
  bytes     the byte-fallback tokens <0x00>..<0xFF> (SentencePiece) or the 256 byte
            symbols (byte-level BPE): any string still encodes and decodes
  special   every added token (control, special, user-defined such as newline runs),
            the tokenizer's special tokens and the ids the model config names
  chat      the tokens of the chat template rendered on a sample conversation
New ids follow the old order (kept old ids sorted), so ids before the first dropped
one (Gemma's specials) do not move. The tokenizer is rebuilt as a real tokenizer of the
same kind (tokenizer.json with the kept vocabulary and merges, plus a trimmed
SentencePiece `tokenizer.model` carrying the original scores and token types, which is
what the GGUF exporter writes, so llama.cpp merges exactly as before).

Modules: source.py (the original vocabulary), choose.py (the kept set), tokenizer.py
(the trimmed tokenizer), model.py (embedding and head), trim.py (end to end, checks, reports).
"""
from .choose import choose_kept, config_token_ids, merge_steps
from .model import trim_model
from .source import BYTE_LEVEL, SPM, SourceVocab, source_vocab, tokenizer_json, tokenizer_kind
from .tokenizer import trim_tokenizer, trimmed_spm_proto, trimmed_tokenizer_json
from .trim import (PARITY_MAX_ABS, TrimmedVocab, format_section, read_user_text,
                   tokenization_report, trim_loaded)

__all__ = ["choose_kept", "config_token_ids", "merge_steps", "trim_model", "BYTE_LEVEL", "SPM",
           "SourceVocab", "source_vocab", "tokenizer_json", "tokenizer_kind", "trim_tokenizer",
           "trimmed_spm_proto", "trimmed_tokenizer_json", "TrimmedVocab", "format_section",
           "read_user_text", "tokenization_report", "trim_loaded", "PARITY_MAX_ABS"]

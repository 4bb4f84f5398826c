"""Training text for healing: paragraphs of the target languages packed into sequences.

Each sequence is BOS + `seq_len - 1` tokens of consecutive paragraphs (joined by a blank
line), with no padding, so every position is a real training position. Languages take
equal shares of the tokens and their sequences are interleaved, so every batch mixes
them. Only fitting text is read (the corpus's profile split and the user's own text),
never evaluation text. Deterministic for the same text, tokenizer and settings.

With a trimmed vocabulary the student reads its own token ids; the teacher (the dense
model) reads the same tokens in its own numbering (`kept[new_id]`), so both see
identical embeddings.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Sequence

import torch


@dataclass
class TrainingText:
    student: torch.Tensor            # [S, T] token ids in the student's vocabulary
    teacher: torch.Tensor            # [S, T] the same tokens in the dense model's vocabulary
    langs: list[str]
    tokens_per_lang: dict[str, int]
    digest: str                      # of the student ids: a checkpoint belongs to one text

    @property
    def n_tokens(self) -> int:
        return int(self.student.numel())


def pack(texts: Sequence[str], tokenize: Callable[[str], list[int]], seq_len: int,
         n_tokens: int, bos_id: int | None) -> list[list[int]]:
    """Sequences of `seq_len` ids: BOS (when the model has one) + consecutive paragraphs."""
    body = seq_len - (bos_id is not None)
    seqs, buf = [], []
    for text in texts:
        buf += tokenize(text + "\n\n")
        while len(buf) >= body:
            seqs.append(([bos_id] if bos_id is not None else []) + buf[:body])
            buf = buf[body:]
            if len(seqs) * seq_len >= n_tokens:
                return seqs
    return seqs


def training_text(langs: Sequence[str], texts_for: Callable[[str], Sequence[str]], tokenizer,
                  seq_len: int, n_tokens: int, extra_texts: Sequence[str] = (),
                  kept_ids: Sequence[int] | None = None) -> TrainingText:
    """Equal tokens per language (plus the user's `extra_texts` as one more share), packed and
    interleaved. `kept_ids`: the trimmed vocabulary's old ids (new id = position)."""
    from ..errors import UserError

    tokenize = lambda t: tokenizer(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    bos = tokenizer.bos_token_id
    groups = [(lang, list(texts_for(lang))) for lang in langs]
    if extra_texts:
        groups.append(("user", list(extra_texts)))
    share = max(seq_len, n_tokens // len(groups))
    per = {name: pack(texts, tokenize, seq_len, share, bos) for name, texts in groups}
    short = [name for name, s in per.items() if not s]
    if short:
        raise UserError(f"no healing text for {', '.join(short)} (each needs at least {seq_len} "
                        f"tokens); add text with --heal-text or --corpus")
    order = []                                 # round-robin over languages
    for i in range(max(len(s) for s in per.values())):
        order += [s[i] for s in per.values() if i < len(s)]
    student = torch.tensor(order, dtype=torch.long)
    teacher = student if kept_ids is None else torch.as_tensor(list(kept_ids), dtype=torch.long)[student]
    h = hashlib.sha256(student.numpy().tobytes()).hexdigest()[:16]
    return TrainingText(student, teacher, [g for g, _ in groups],
                        {name: len(s) * seq_len for name, s in per.items()}, h)

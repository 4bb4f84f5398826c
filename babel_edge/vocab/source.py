"""The original vocabulary as trimming sees it: tokenizer kind, tokens, merges, byte tokens,
SentencePiece scores and token types (read from the tokenizer's own files)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError


SPM = "sentencepiece-bpe"          # BPE with byte fallback over '▁'-escaped text (Gemma, Llama 2)
BYTE_LEVEL = "byte-level-bpe"      # GPT-2 style byte-level BPE (Llama 3, Qwen2, the tiny models)


# ------------------------------------------------------------------ the original vocabulary

@dataclass
class SourceVocab:
    """What trimming needs to know about the original tokenizer."""
    kind: str
    tj: dict                         # tokenizer.json
    tokens: list[str]                # id -> token text (model vocab + added tokens)
    added: set[int]                  # ids of added tokens (matched before BPE)
    merges: list[tuple[str, str]]    # in rank order
    byte_ids: list[int]
    scores: list[float] | None = None     # SentencePiece: per id (original scores)
    types: list[int] | None = None        # SentencePiece token types (GGUF enum)
    scores_from: str | None = None
    proto: bytes | None = None            # the source tokenizer.model, when there is one

    @property
    def size(self) -> int:
        return len(self.tokens)


def tokenizer_json(tokenizer, needed_for: str = "--trim-vocab") -> dict:
    """The fast tokenizer's tokenizer.json as a dict (UserError when the tokenizer is slow)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UserError(f"{needed_for} needs a fast (tokenizer.json) tokenizer; this model has a "
                        "slow one only")
    return json.loads(backend.to_str())


def _has_type(node, name: str) -> bool:
    if isinstance(node, dict):
        return node.get("type") == name or any(_has_type(v, name) for v in node.values())
    if isinstance(node, list):
        return any(_has_type(v, name) for v in node)
    return False


def tokenizer_kind(tj: dict) -> str:
    model = tj.get("model") or {}
    if model.get("type") != "BPE":
        raise UserError(f"--trim-vocab supports BPE tokenizers (SentencePiece BPE with byte "
                        f"fallback, byte-level BPE), not '{model.get('type')}'")
    if model.get("byte_fallback"):
        return SPM
    if _has_type(tj.get("pre_tokenizer"), "ByteLevel") or _has_type(tj.get("decoder"), "ByteLevel"):
        return BYTE_LEVEL
    raise UserError("--trim-vocab needs a tokenizer that encodes any text (SentencePiece BPE with "
                    "byte fallback, or byte-level BPE); this BPE tokenizer has neither, so text "
                    "outside the kept tokens could not be encoded")


def _pairs(merges) -> list[tuple[str, str]]:
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else (m[0], m[1]) for m in merges]


def source_vocab(tokenizer, model_dir: Path | None = None) -> SourceVocab:
    from ..exporters.gguf import vocab as gguf_vocab

    tj = tokenizer_json(tokenizer)
    kind = tokenizer_kind(tj)
    vocab = dict(tj["model"]["vocab"])
    added = {int(a["id"]): a["content"] for a in tj.get("added_tokens", [])}
    n = max(list(vocab.values()) + list(added) + [-1]) + 1
    tokens: list[str | None] = [None] * n
    for t, i in vocab.items():
        tokens[i] = t
    for i, t in added.items():
        tokens[i] = t if tokens[i] is None else tokens[i]
    holes = [i for i, t in enumerate(tokens) if t is None]
    if holes:
        raise UserError(f"the tokenizer has no token for id {holes[0]} ({len(holes)} gaps); "
                        f"--trim-vocab needs a contiguous vocabulary")
    merges = _pairs(tj["model"].get("merges", []))
    if kind == SPM:
        names = [f"<0x{b:02X}>" for b in range(256)]
        if "<0x09>" not in vocab and "\t" in vocab:     # transformers' Gemma converter renames it
            names[9] = "\t"
        byte_ids = [vocab[t] for t in names if t in vocab]
        v = gguf_vocab.vocab_from_tokenizer(tokenizer, n, model_dir)
        if list(v.tokens[:n]) != tokens:
            raise UserError("the tokenizer's token list and its SentencePiece data disagree; "
                            "--trim-vocab cannot keep the original merge scores")
        proto = None
        if model_dir is not None and (Path(model_dir) / "tokenizer.model").exists():
            proto = (Path(model_dir) / "tokenizer.model").read_bytes()
        return SourceVocab(kind, tj, tokens, set(added), merges, byte_ids, list(v.scores),
                           list(v.types), v.scores_from, proto)
    from tokenizers.pre_tokenizers import ByteLevel

    byte_ids = sorted(vocab[c] for c in ByteLevel.alphabet() if c in vocab)
    return SourceVocab(kind, tj, tokens, set(added), merges, byte_ids)

"""A Hugging Face tokenizer as GGUF tokenizer metadata (what llama.cpp tokenizes with).

Two kinds, read from the tokenizer's own files:
  SentencePiece BPE (`tokenizer.ggml.model = "llama"`: Gemma, Llama 2, Mistral v0.1):
      tokens, scores, token types. Scores come, in order of preference, from
      `tokenizer.model` (the SentencePiece proto), from the GGUF the model was
      converted from when its token list is identical (babel_edge_source.json),
      or are rebuilt from tokenizer.json's merge ranks: llama.cpp merges the
      adjacent pair whose result has the highest score, Hugging Face the pair
      with the lowest rank, so score = -rank of the first merge producing the
      token orders merges the same way.
  Byte-level BPE (`"gpt2"`: Llama 3, Qwen2, the tiny test models): tokens, merges,
      token types and the pre-tokenizer, recognised from tokenizer.json's regex.
Special ids, add_bos/add_eos (observed by encoding, not guessed) and the chat
template travel in both cases. The exporter then checks that llama.cpp
tokenizes the parity texts exactly as the HF tokenizer does.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import UserError
from ...vocab.source import tokenizer_json

# GGUF token types (SentencePiece's enum)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# tokenizer.json Split regex -> llama.cpp pre-tokenizer name
_PRE_BY_REGEX = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "llama-bpe",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "qwen2",
}


@dataclass
class Vocab:
    model: str                         # "llama" (SentencePiece) | "gpt2" (byte-level BPE)
    pre: str
    tokens: list[str]
    types: list[int]
    scores: list[float] | None = None
    merges: list[str] | None = None
    special: dict[str, int] = field(default_factory=dict)   # bos/eos/unk/pad -> id
    add_bos: bool = False
    add_eos: bool = False
    add_space_prefix: bool = False
    chat_template: str | None = None
    scores_from: str | None = None

    def write(self, w) -> None:
        w.add_tokenizer_model(self.model)
        w.add_tokenizer_pre(self.pre)
        w.add_token_list(self.tokens)
        w.add_token_types(self.types)
        if self.scores is not None:
            w.add_token_scores(self.scores)
        if self.merges:
            w.add_token_merges(self.merges)
        adders = {"bos": w.add_bos_token_id, "eos": w.add_eos_token_id,
                  "unk": w.add_unk_token_id, "pad": w.add_pad_token_id}
        for k, i in self.special.items():
            adders[k](int(i))
        w.add_add_bos_token(self.add_bos)
        w.add_add_eos_token(self.add_eos)
        if self.model == "llama":
            w.add_add_space_prefix(self.add_space_prefix)
        if self.chat_template:
            w.add_chat_template(self.chat_template)

    def summary(self) -> dict:
        return {"model": self.model, "pre": self.pre, "tokens": len(self.tokens),
                "merges": len(self.merges or []), "scores_from": self.scores_from,
                "special": self.special, "add_bos": self.add_bos, "add_eos": self.add_eos,
                "chat_template": bool(self.chat_template)}


def _observed_special_adds(tokenizer) -> tuple[bool, bool]:
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    add_bos = bos is not None and len(full) > len(plain) and full[0] == bos
    add_eos = eos is not None and len(full) > len(plain) and full[-1] == eos
    return add_bos, add_eos


def _types_and_tokens(tj: dict, n_vocab: int, byte_tokens: bool) -> tuple[list[str], list[int]]:
    vocab = dict(tj["model"]["vocab"])
    added = {a["id"]: a for a in tj.get("added_tokens", [])}
    for i, a in added.items():
        vocab.setdefault(a["content"], i)
    n = max(n_vocab, max(vocab.values()) + 1)
    tokens: list[str | None] = [None] * n
    for tok, i in vocab.items():
        tokens[i] = tok
    types = [NORMAL] * n
    for i in range(n):
        if tokens[i] is None:                       # embedding rows past the tokenizer
            tokens[i], types[i] = f"[PAD{i}]", UNUSED
        elif i in added:
            types[i] = CONTROL if added[i].get("special") else USER_DEFINED
        elif byte_tokens and len(tokens[i]) == 6 and tokens[i].startswith("<0x") and tokens[i].endswith(">"):
            types[i] = BYTE
    return tokens, types  # type: ignore[return-value]


def _merge_pairs(tj: dict) -> list[tuple[str, str]]:
    out = []
    for m in tj["model"].get("merges", []):
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        out.append((a, b))
    return out


def _spm_proto(model_dir: Path | None):
    if model_dir is None or not (model_dir / "tokenizer.model").exists():
        return None
    from sentencepiece import sentencepiece_model_pb2 as pb

    m = pb.ModelProto()
    m.ParseFromString((model_dir / "tokenizer.model").read_bytes())
    return m if m.trainer_spec.model_type == pb.TrainerSpec.BPE else None


def _source_gguf_vocab(model_dir: Path | None, tokens: list[str]):
    """(scores, types) of the GGUF this model was converted from, if its tokens are ours."""
    if model_dir is None or not (model_dir / "babel_edge_source.json").exists():
        return None
    try:
        src = Path(json.loads((model_dir / "babel_edge_source.json").read_text())["gguf"])
        if not src.exists():
            return None
        from ...models.gguf_tokenizer import gguf_metadata

        meta = gguf_metadata(src, "tokenizer.ggml.")
        if list(meta.get("tokenizer.ggml.tokens", [])) != tokens:
            return None
        return ([float(s) for s in meta["tokenizer.ggml.scores"]],
                [int(t) for t in meta["tokenizer.ggml.token_type"]], str(src))
    except (OSError, ValueError, KeyError):
        return None


def _space_prefix(tj: dict) -> bool:
    """Does the SentencePiece-style tokenizer prepend '▁' to the text?"""
    def walk(node):
        if not node:
            return False
        if node.get("type") == "Sequence":
            items = node.get("normalizers") or node.get("pretokenizers") or []
            return any(walk(x) for x in items)
        if node.get("type") == "Prepend":
            return True
        if node.get("type") == "Metaspace":
            return node.get("prepend_scheme", "always") != "never" and node.get("add_prefix_space", True)
        return False
    return walk(tj.get("normalizer")) or walk(tj.get("pre_tokenizer"))


def _byte_level_pre(tj: dict) -> str:
    pt = tj.get("pre_tokenizer") or {}
    if pt.get("type") == "ByteLevel" and pt.get("use_regex", True):
        return "gpt-2"
    if pt.get("type") == "Sequence":
        splits = [p for p in pt.get("pretokenizers", []) if p.get("type") == "Split"]
        if len(splits) == 1:
            regex = splits[0].get("pattern", {}).get("Regex")
            if regex in _PRE_BY_REGEX:
                return _PRE_BY_REGEX[regex]
    raise UserError("the tokenizer's pre-tokenizer is not one llama.cpp knows (gpt-2, llama-bpe, "
                    "qwen2); a GGUF would tokenize differently, so it is not exported")


def vocab_from_tokenizer(tokenizer, n_vocab: int, model_dir: Path | None = None) -> Vocab:
    """GGUF tokenizer metadata for a HF fast tokenizer; n_vocab = the embedding's rows."""
    tj = tokenizer_json(tokenizer, "GGUF export")
    model = tj.get("model", {})
    if model.get("type") != "BPE":
        raise UserError(f"tokenizer model '{model.get('type')}' is not supported for GGUF export "
                        f"(supported: SentencePiece BPE, byte-level BPE)")
    add_bos, add_eos = _observed_special_adds(tokenizer)
    special = {k: getattr(tokenizer, f"{k}_token_id") for k in ("bos", "eos", "unk", "pad")}
    special = {k: int(v) for k, v in special.items() if v is not None}
    template = getattr(tokenizer, "chat_template", None)
    template = template if isinstance(template, str) else None

    if model.get("byte_fallback"):                       # SentencePiece-style
        tokens, types = _types_and_tokens(tj, n_vocab, byte_tokens=True)
        proto = _spm_proto(model_dir)
        src = None if proto is not None else _source_gguf_vocab(model_dir, tokens)
        if proto is not None:
            scores = [0.0] * len(tokens)
            for i, p in enumerate(proto.pieces):
                if i < len(tokens) and p.piece == tokens[i]:
                    scores[i], types[i] = float(p.score), int(p.type)
            scores_from = "tokenizer.model"
        elif src is not None:
            scores, types, src_path = src
            scores_from = f"source GGUF {Path(src_path).name}"
        else:
            rank: dict[str, int] = {}
            for r, (a, b) in enumerate(_merge_pairs(tj)):
                rank.setdefault(a + b, r)
            scores = [-float(rank[t] + 1) if t in rank else 0.0 for t in tokens]
            scores_from = "tokenizer.json merge ranks"
        return Vocab("llama", "default", tokens, types, scores=scores, special=special,
                     add_bos=add_bos, add_eos=add_eos, add_space_prefix=_space_prefix(tj),
                     chat_template=template, scores_from=scores_from)

    pre = _byte_level_pre(tj)
    tokens, types = _types_and_tokens(tj, n_vocab, byte_tokens=False)
    merges = [f"{a} {b}" for a, b in _merge_pairs(tj)]
    return Vocab("gpt2", pre, tokens, types, merges=merges, special=special, add_bos=add_bos,
                 add_eos=add_eos, chat_template=template)

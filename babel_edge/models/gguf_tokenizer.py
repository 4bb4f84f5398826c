"""A correct Hugging Face tokenizer built from a GGUF file's own vocabulary.

Why: transformers 4.57 turns the Gemma 3 GGUF vocabulary into a Unigram
tokenizer, which splits "capital" into "c ap it al" and gives an English
perplexity of ~641 instead of ~8. The GGUF says what the tokenizer really is
(`tokenizer.ggml.model == "llama"`: SentencePiece BPE, byte fallback), so we
rebuild exactly that: a SentencePiece ModelProto from tokens, scores and token
types, with the identity normalizer and no dummy prefix, converted by
transformers into a fast tokenizer. Token ids match llama.cpp's (tested).

Byte-level BPE vocabularies (`tokenizer.ggml.model == "gpt2"`: Qwen, Llama 3)
are converted correctly by transformers itself and are left to it.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import gguf


# Gemma's turn format (<start_of_turn>role\n ... <end_of_turn>\n; the assistant's role is
# "model"; a system message is folded into the next user turn). The conversion of a Gemma
# GGUF that carries no `tokenizer.chat_template` (the embedded Gemma 3 270M, a base model)
# writes it into the tokenizer so the turn tokens are known; the server does not take it
# for the model's own template (runtime/engines/base.py: own_chat_template) and offers it
# only as `--chat-template gemma`.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% set ns = namespace(sys='') %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% set ns.sys = ns.sys + m['content'] | trim + '\n\n' %}"
    "{% else %}"
    "{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else 'user') + '\n' }}"
    "{% if m['role'] == 'user' %}{{ ns.sys }}{% set ns.sys = '' %}{% endif %}"
    "{{ m['content'] | trim + '<end_of_turn>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def default_chat_template(arch: str, tokens) -> str | None:
    """The chat template to use when a GGUF carries none: Gemma's turn format for Gemma
    vocabularies (they have the turn tokens), otherwise none."""
    if arch.startswith("gemma") and "<start_of_turn>" in tokens:
        return GEMMA_CHAT_TEMPLATE
    return None


def gguf_fields(path: str | Path, prefix: str = "") -> dict:
    """Decoded metadata of a GGUF file (keys starting with `prefix`)."""
    reader = gguf.GGUFReader(str(path))
    return {k: f.contents() for k, f in reader.fields.items() if k.startswith(prefix)}


_SCALAR = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1",
           10: "<u8", 11: "<i8", 12: "<f8"}
_STRING, _ARRAY = 8, 9


def gguf_metadata(path: str | Path, prefix: str = "") -> dict:
    """Metadata (keys starting with `prefix`) read straight from the GGUF header.

    Same values as `gguf_fields`, but it parses only the key/value section: gguf-py's
    reader also builds a view of every tensor and of every array element, which takes
    ~25 s on a 262k-token vocabulary; this takes well under a second."""
    import struct

    import numpy as np

    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        version, _n_tensors, n_kv = struct.unpack("<IQQ", f.read(20))
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is not supported")
        rd = f.read

        def string() -> str:
            (n,) = struct.unpack("<Q", rd(8))
            return rd(n).decode("utf-8", "surrogateescape")

        def value(t: int):
            if t == _STRING:
                return string()
            if t == _ARRAY:
                et, n = struct.unpack("<IQ", rd(12))
                if et == _STRING:
                    return [string() for _ in range(n)]
                if et == _ARRAY:
                    return [value(_ARRAY) for _ in range(n)]
                arr = np.frombuffer(rd(n * np.dtype(_SCALAR[et]).itemsize), dtype=_SCALAR[et])
                return [bool(x) for x in arr] if et == 7 else arr.tolist()
            x = np.frombuffer(rd(np.dtype(_SCALAR[t]).itemsize), dtype=_SCALAR[t])[0].item()
            return bool(x) if t == 7 else x

        out = {}
        for _ in range(n_kv):
            key = string()
            (t,) = struct.unpack("<I", rd(4))
            v = value(t)
            if key.startswith(prefix):
                out[key] = v
    return out


def spm_model_proto(meta: dict) -> bytes:
    """Serialized SentencePiece BPE ModelProto from GGUF tokenizer metadata."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    tokens = meta["tokenizer.ggml.tokens"]
    scores = meta.get("tokenizer.ggml.scores") or [0.0] * len(tokens)
    types = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    m = pb.ModelProto()
    ts = m.trainer_spec
    ts.model_type = pb.TrainerSpec.BPE
    ts.vocab_size = len(tokens)
    ts.byte_fallback = True
    ts.unk_id = meta.get("tokenizer.ggml.unknown_token_id", 0)
    ts.bos_id = meta.get("tokenizer.ggml.bos_token_id", -1)
    ts.eos_id = meta.get("tokenizer.ggml.eos_token_id", -1)
    ts.pad_id = meta.get("tokenizer.ggml.padding_token_id", -1)
    ns = m.normalizer_spec
    ns.name = "identity"
    ns.add_dummy_prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", False))
    ns.remove_extra_whitespaces = False
    ns.escape_whitespaces = True
    # GGUF token types use SentencePiece's enum (1 normal, 2 unknown, 3 control,
    # 4 user defined, 5 unused, 6 byte), so they carry over unchanged.
    for tok, score, typ in zip(tokens, scores, types):
        p = m.pieces.add()
        p.piece, p.score, p.type = tok, float(score), int(typ)
    return m.SerializeToString()


def tokenizer_from_gguf(path: str | Path):
    """The fast tokenizer a GGUF file describes; None when transformers' own conversion is right."""
    meta = gguf_fields(path)
    kind = meta.get("tokenizer.ggml.model")
    if kind != "llama":
        return None
    tokens = meta["tokenizer.ggml.tokens"]

    def tok(key, default=None):
        i = meta.get(key)
        return tokens[i] if i is not None and 0 <= i < len(tokens) else default

    from transformers import LlamaTokenizerFast, GemmaTokenizerFast

    arch = meta.get("general.architecture", "")
    cls = GemmaTokenizerFast if arch.startswith("gemma") else LlamaTokenizerFast
    with tempfile.TemporaryDirectory() as tmp:
        vocab = Path(tmp) / "tokenizer.model"
        vocab.write_bytes(spm_model_proto(meta))
        tk = cls(vocab_file=str(vocab),
                 bos_token=tok("tokenizer.ggml.bos_token_id"),
                 eos_token=tok("tokenizer.ggml.eos_token_id"),
                 unk_token=tok("tokenizer.ggml.unknown_token_id"),
                 pad_token=tok("tokenizer.ggml.padding_token_id"),
                 add_bos_token=bool(meta.get("tokenizer.ggml.add_bos_token", True)),
                 add_eos_token=bool(meta.get("tokenizer.ggml.add_eos_token", False)),
                 legacy=False)
    template = meta.get("tokenizer.chat_template") or default_chat_template(arch, tokens)
    if template:
        tk.chat_template = template
    return tk

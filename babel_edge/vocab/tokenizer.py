"""The trimmed tokenizer: the same kind of tokenizer over the kept tokens, ids renumbered
(tokenizer.json with the kept vocabulary and merges, plus a trimmed SentencePiece
`tokenizer.model` carrying the original scores and token types)."""
from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Sequence

from .source import SPM, SourceVocab, _pairs


def _remap_processor(node, new_id: dict[int, int]):
    """Special-token ids inside a tokenizer.json post-processor (Template/Bert/Roberta/Sequence)."""
    if isinstance(node, list):
        return [_remap_processor(x, new_id) for x in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k == "ids" and isinstance(v, list) and all(isinstance(x, int) for x in v):
            out[k] = [new_id[x] for x in v]
        elif k in ("sep", "cls") and isinstance(v, list) and len(v) == 2 and isinstance(v[1], int):
            out[k] = [v[0], new_id[v[1]]]
        else:
            out[k] = _remap_processor(v, new_id)
    return out


def trimmed_tokenizer_json(src: SourceVocab, kept: Sequence[int]) -> dict:
    new_id = {o: n for n, o in enumerate(kept)}
    tj = copy.deepcopy(src.tj)
    model = tj["model"]
    model["vocab"] = {t: new_id[i] for t, i in src.tj["model"]["vocab"].items() if i in new_id}
    names = set(model["vocab"])
    raw = src.tj["model"].get("merges", [])
    model["merges"] = [m for m, (a, b) in zip(raw, _pairs(raw))
                       if a in names and b in names and a + b in names]
    tj["added_tokens"] = [dict(a, id=new_id[a["id"]]) for a in src.tj.get("added_tokens", [])
                          if a["id"] in new_id]
    if tj.get("post_processor"):
        tj["post_processor"] = _remap_processor(tj["post_processor"], new_id)
    if tj.get("padding") and "pad_id" in tj["padding"]:
        tj["padding"]["pad_id"] = new_id.get(tj["padding"]["pad_id"], 0)
    return tj


def trimmed_spm_proto(src: SourceVocab, kept: Sequence[int], special: dict[str, int]) -> bytes:
    """A SentencePiece BPE ModelProto over the kept pieces with their original scores/types."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    from ..models.gguf_tokenizer import spm_model_proto

    if src.proto is not None:
        m = pb.ModelProto()
        m.ParseFromString(src.proto)
        # same pieces by id (transformers may rename an absent "\t"'s byte piece <0x09> to
        # "\t" in tokenizer.json; the proto keeps SentencePiece's own name)
        if len(m.pieces) == src.size:
            old = list(m.pieces)
            del m.pieces[:]
            for i in kept:
                p = m.pieces.add()
                p.CopyFrom(old[i])
            ts = m.trainer_spec
            ts.vocab_size = len(kept)
            for key in ("unk", "bos", "eos", "pad"):
                setattr(ts, f"{key}_id", special.get(key, -1))
            return m.SerializeToString()
    meta = {"tokenizer.ggml.tokens": [src.tokens[i] for i in kept],
            "tokenizer.ggml.scores": [src.scores[i] for i in kept],
            "tokenizer.ggml.token_type": [src.types[i] for i in kept],
            "tokenizer.ggml.add_space_prefix": False}
    for key, name in (("unk", "unknown"), ("bos", "bos"), ("eos", "eos"), ("pad", "padding")):
        if key in special:
            meta[f"tokenizer.ggml.{name}_token_id"] = special[key]
    return spm_model_proto(meta)


SLOW_FILES = ("tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json")


def trim_tokenizer(tokenizer, src: SourceVocab, kept: Sequence[int]):
    """(HF fast tokenizer over the kept tokens, {file name: bytes} to save with a model)."""
    from transformers import AutoTokenizer

    new_id = {o: n for n, o in enumerate(kept)}
    tj = trimmed_tokenizer_json(src, kept)
    with tempfile.TemporaryDirectory(prefix="babel-edge-vocab-") as tmp:
        d = Path(tmp)
        tokenizer.save_pretrained(d)
        for name in SLOW_FILES:                  # rewritten below where the kind has them
            (d / name).unlink(missing_ok=True)
        (d / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False))
        cfg_path = d / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text())
        if "added_tokens_decoder" in cfg:
            cfg["added_tokens_decoder"] = {str(new_id[int(k)]): v for k, v in
                                           cfg["added_tokens_decoder"].items() if int(k) in new_id}
        cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False))
        special = {k: new_id[getattr(tokenizer, f"{k}_token_id")] for k in ("unk", "bos", "eos", "pad")
                   if getattr(tokenizer, f"{k}_token_id", None) in new_id}
        if src.kind == SPM:
            (d / "tokenizer.model").write_bytes(trimmed_spm_proto(src, kept, special))
        else:
            (d / "vocab.json").write_text(json.dumps(tj["model"]["vocab"], ensure_ascii=False))
            merges = ["#version: 0.2"] + [m if isinstance(m, str) else " ".join(m)
                                          for m in tj["model"]["merges"]]
            (d / "merges.txt").write_text("\n".join(merges) + "\n")
        files = {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}
        extra = {"fix_mistral_regex": False} if "Mistral" not in type(tokenizer).__name__ else {}
        new = AutoTokenizer.from_pretrained(str(d), **extra)
        new.backend_tokenizer                 # fully built before the folder goes
        new.vocab_file = None                 # the temporary tokenizer.model is gone
    return new, files

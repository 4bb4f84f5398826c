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
"""
from __future__ import annotations

import copy
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

from .errors import UserError
from .progress import status

SPM = "sentencepiece-bpe"          # BPE with byte fallback over '▁'-escaped text (Gemma, Llama 2)
BYTE_LEVEL = "byte-level-bpe"      # GPT-2 style byte-level BPE (Llama 3, Qwen2, the tiny models)
REASONS = ("special", "bytes", "chat", "text", "merges", "chars", "config")
CONFIG_ID_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id",
                  "decoder_start_token_id", "sep_token_id")
CHAT_SAMPLE = [{"role": "system", "content": "Be brief."},
               {"role": "user", "content": "Hello! How are you?"},
               {"role": "assistant", "content": "Fine, thanks."},
               {"role": "user", "content": "Tell me more."}]
PARITY_PARAGRAPHS = 2              # per target language, cut to PARITY_TOKENS
PARITY_TOKENS = 64
PARITY_MAX_ABS = 1e-3              # same hidden states, fewer rows of the head: ~exact


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
    from .exporters import gguf_vocab

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


# ------------------------------------------------------------------ choosing the kept set

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


# ------------------------------------------------------------------ the trimmed tokenizer

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

    from .models.gguf_tokenizer import spm_model_proto

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


# ------------------------------------------------------------------ the model

def trim_model(model, kept: Sequence[int]) -> None:
    """Gather the input embedding (and an untied output head) to rows `kept`, in place;
    renumber the special-token ids of the config and the generation config."""
    from torch import nn

    idx = torch.as_tensor(list(kept), dtype=torch.long)
    new_id = {o: n for n, o in enumerate(kept)}
    emb = model.get_input_embeddings()
    head = model.get_output_embeddings()
    if idx.numel() and int(idx.max()) >= emb.weight.shape[0]:
        raise UserError(f"kept token id {int(idx.max())} is past the embedding's "
                        f"{emb.weight.shape[0]} rows; the tokenizer does not fit this model")
    tied = head is not None and head.weight.data_ptr() == emb.weight.data_ptr()
    with torch.no_grad():
        emb.weight = nn.Parameter(emb.weight[idx.to(emb.weight.device)].clone(), requires_grad=False)
    emb.num_embeddings = len(kept)
    if getattr(emb, "padding_idx", None) is not None:
        emb.padding_idx = new_id.get(emb.padding_idx)
    if head is not None:
        if tied:
            head.weight = emb.weight
        else:
            with torch.no_grad():
                head.weight = nn.Parameter(head.weight[idx.to(head.weight.device)].clone(),
                                           requires_grad=False)
                if getattr(head, "bias", None) is not None:
                    head.bias = nn.Parameter(head.bias[idx.to(head.bias.device)].clone(),
                                             requires_grad=False)
        head.out_features = len(kept)
    model.config.vocab_size = len(kept)
    for obj in (model, getattr(model, "model", None)):
        if obj is not None and hasattr(obj, "vocab_size"):
            obj.vocab_size = len(kept)
    remap = lambda v: ([new_id[x] for x in v if x in new_id] if isinstance(v, list)  # noqa: E731
                       else new_id.get(v) if isinstance(v, int) else v)
    for cfg in (model.config, getattr(model, "generation_config", None)):
        if cfg is None:
            continue
        for key in CONFIG_ID_KEYS:
            if getattr(cfg, key, None) is not None:
                setattr(cfg, key, remap(getattr(cfg, key)))


def config_token_ids(model) -> list[int]:
    out = []
    for cfg in (model.config, getattr(model, "generation_config", None)):
        for key in CONFIG_ID_KEYS:
            v = getattr(cfg, key, None) if cfg is not None else None
            out += [x for x in (v if isinstance(v, list) else [v]) if isinstance(x, int) and x >= 0]
    return out


# ------------------------------------------------------------------ checks and reports

def tokenization_report(old_tok, new_tok, kept: Sequence[int], texts: Sequence[str]) -> dict:
    """How a text set tokenizes before and after trimming (no special tokens added):
    share of paragraphs whose tokens are unchanged (mapped to the new ids), share of the
    original tokens that are kept, token counts and bytes, and round trips
    (decode(encode(text)) == text) with the trimmed tokenizer."""
    new_id = {o: n for n, o in enumerate(kept)}
    olds, news = _encode_many(old_tok, texts), _encode_many(new_tok, texts)
    same = covered = n_old = n_new = 0
    rt_fail, rt_fail_before = [], 0
    for text, o, n in zip(texts, olds, news):
        mapped = [new_id.get(i, -1) for i in o]
        same += mapped == n
        covered += sum(1 for i in mapped if i >= 0)
        n_old, n_new = n_old + len(o), n_new + len(n)
        if new_tok.decode(n) != text:
            rt_fail.append(text[:40])
            rt_fail_before += old_tok.decode(o) != text
    n_bytes = sum(len(t.encode()) for t in texts)
    k = max(len(texts), 1)
    return {"paragraphs": len(texts), "bytes": n_bytes, "unchanged_share": same / k,
            "token_coverage": covered / max(n_old, 1), "tokens_before": n_old,
            "tokens_after": n_new, "tokens_ratio": n_new / max(n_old, 1),
            "bytes_per_token_before": n_bytes / max(n_old, 1),
            "bytes_per_token_after": n_bytes / max(n_new, 1),
            "roundtrip_failures": len(rt_fail), "roundtrip_failures_untrimmed": rt_fail_before,
            "roundtrip_examples": rt_fail[:3]}


def _logits(model, ids: Sequence[int]):
    with torch.inference_mode():
        dev = next(model.parameters()).device
        return model(input_ids=torch.tensor([list(ids)], device=dev)).logits[0].float().cpu()


# ------------------------------------------------------------------ end to end

@dataclass
class TrimmedVocab:
    kind: str
    kept: list[int]                       # old ids, sorted; new id = position
    tokenizer: object                     # the trimmed HF fast tokenizer
    files: dict[str, bytes] = field(repr=False)
    section: dict = field(default_factory=dict)   # the plan's "vocab" section

    def write(self, out_dir: str | Path) -> None:
        """The tokenizer files (tokenizer.json, tokenizer_config.json, tokenizer.model, ...)."""
        for name, data in self.files.items():
            tmp = Path(out_dir) / f".{name}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, Path(out_dir) / name)


def read_user_text(paths: Sequence[str | Path] | str | Path | None) -> list[str]:
    """Paragraphs (blank-line separated) of the user's --vocab-text files."""
    if not paths:
        return []
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out = []
    for p in map(Path, paths):
        try:
            text = p.expanduser().read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError(f"--vocab-text '{p}' does not exist; give a UTF-8 text file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"--vocab-text '{p}' cannot be read as UTF-8 text: {e}") from None
        paras = [x.strip("\n") for x in text.replace("\r\n", "\n").split("\n\n") if x.strip()]
        if not paras:
            raise UserError(f"--vocab-text '{p}' is empty; give text in the target languages")
        out += paras
    return out


def trim_loaded(model, tokenizer, langs: Sequence[str], texts_for: Callable[[str], Sequence[str]],
                *, user_texts: Sequence[str] = (), model_dir: Path | None = None,
                eval_for: Callable[[str], Sequence[str]] | None = None,
                other_langs: Sequence[str] = (), check: bool = True) -> TrimmedVocab:
    """Trim `model` (in place) and build its tokenizer for `langs`.

    texts_for(lang): the text that chooses the tokens (the profile split); eval_for(lang):
    held-out text for the coverage report (targets and `other_langs`). Raises when the
    trimmed tokenizer does not reproduce the original tokens on the choosing text, or the
    trimmed model's logits over the kept tokens drift from the untrimmed model's."""
    langs = list(dict.fromkeys(langs))
    if not langs and not user_texts:
        raise UserError("vocabulary trimming needs target languages or --vocab-text")
    with status("choosing the kept vocabulary"):
        src = source_vocab(tokenizer, model_dir)
        rows = model.get_input_embeddings().weight.shape[0]
        if src.size > rows:
            raise UserError(f"the tokenizer has {src.size} tokens but the embedding {rows} rows; "
                            f"the model directory is inconsistent")
        per_lang = {l: list(texts_for(l)) for l in langs}
        texts = [t for l in langs for t in per_lang[l]] + list(user_texts)
        kept, counts, details = choose_kept(tokenizer, src, texts, config_token_ids(model))
    with status(f"building the trimmed tokenizer ({len(kept):,} of {rows:,} tokens)"):
        new_tok, files = trim_tokenizer(tokenizer, src, kept)
    new_id = {o: n for n, o in enumerate(kept)}
    # 1. exactness on the choosing text: the same tokens, renumbered
    with status("checking the trimmed tokenizer on the target text"):
        olds, news = _encode_many(tokenizer, texts), _encode_many(new_tok, texts)
        bad = [t for t, o, n in zip(texts, olds, news) if [new_id.get(i, -1) for i in o] != n]
    if bad:
        raise RuntimeError(f"vocabulary trimming changed the tokenization of {len(bad)} target "
                           f"paragraphs (e.g. {bad[0][:60]!r}); this is a bug in babel-edge")
    # 2. parity: untrimmed vs trimmed model on target text, logits over the kept tokens
    probe = [o[:PARITY_TOKENS] for l in langs
             for o in _encode_many(tokenizer, per_lang[l][:PARITY_PARAGRAPHS]) if len(o) > 1]
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None:
        probe = [[bos] + p[:PARITY_TOKENS - 1] for p in probe]
    idx = torch.as_tensor(kept)
    before = [_logits(model, p)[:, idx] for p in probe] if check else []
    total_before = sum(p.numel() for p in model.parameters())
    trim_model(model, kept)
    parity = None
    if check:
        diffs = [float((_logits(model, [new_id[i] for i in p]) - b).abs().max())
                 for p, b in zip(probe, before)]
        parity = {"sequences": len(probe), "max_abs_diff": max(diffs, default=0.0),
                  "threshold": PARITY_MAX_ABS}
        if parity["max_abs_diff"] > PARITY_MAX_ABS:
            raise RuntimeError(f"the trimmed model's logits over the kept tokens differ from the "
                               f"untrimmed model's by {parity['max_abs_diff']:.3g} "
                               f"(> {PARITY_MAX_ABS}); this is a bug in babel-edge")
    report = {}
    if eval_for is not None:
        with status("measuring tokenization on the eval split"):
            for l in list(dict.fromkeys(langs + list(other_langs))):
                try:
                    ev = list(eval_for(l))
                except Exception:  # noqa: BLE001 - a language the corpus lacks is skipped
                    continue
                if ev:
                    report[l] = dict(tokenization_report(tokenizer, new_tok, kept, ev),
                                     target=l in langs)
    section = {
        "trimmed": True, "tokenizer_kind": src.kind, "vocab_before": rows, "kept": len(kept),
        "kept_share": len(kept) / rows, "kept_by_reason": counts,
        "merges_before": len(src.merges), "merges_after": len(json.loads(files["tokenizer.json"])
                                                              ["model"].get("merges", [])),
        "scores_from": src.scores_from,
        "chosen_from": {"langs": langs, "split": "profile",
                        "paragraphs": sum(len(v) for v in per_lang.values()),
                        "chars": sum(len(t) for v in per_lang.values() for t in v),
                        "user_paragraphs": len(user_texts),
                        "user_chars": sum(len(t) for t in user_texts)},
        **details,
        "rule": "tokens the original tokenizer produces on the text + the parts and results of "
                "the merges that build them (BPE replayed on each token's text) + single-character "
                "tokens inside kept tokens (SentencePiece) + all byte tokens + all added/special "
                "tokens + config ids + chat-template tokens; merges kept when both parts and the "
                "result are kept; new ids in the old order",
        "parity": parity,
        "params": {"embedding_before": rows * model.get_input_embeddings().weight.shape[1],
                   "embedding_after": model.get_input_embeddings().weight.numel(),
                   "total_before": total_before,
                   "total_after": sum(p.numel() for p in model.parameters())},
        "eval": report,
        "kept_ids": list(kept),
    }
    return TrimmedVocab(src.kind, list(kept), new_tok, files, section)


def format_section(s: dict) -> list[str]:
    """A few human lines about a plan's "vocab" section."""
    lines = [f"vocabulary {s['vocab_before']:,} -> {s['kept']:,} tokens ({s['kept_share']:.1%}, "
             f"{s['tokenizer_kind']}); kept: " + ", ".join(f"{k} {v:,}" for k, v in
                                                           s["kept_by_reason"].items() if v)]
    for lang, r in s.get("eval", {}).items():
        lines.append(f"  {lang:>3} {'target' if r['target'] else 'other ':6} eval split: "
                     f"{r['unchanged_share']:.1%} of paragraphs tokenize as before, "
                     f"{r['token_coverage']:.1%} of tokens kept, x{r['tokens_ratio']:.2f} tokens, "
                     f"round-trip failures {r['roundtrip_failures']}")
    return lines

"""What onnxruntime-genai needs to load an export as a model, and a check that it computes
what onnxruntime does.

    write_genai_files(out_dir, lm, io)   # genai_config.json; tokenizer_config.json made explicit
    genai_logits_fn(out_dir)             # a parity.LogitsFn through og.Model / og.Generator
    tokenizer_mismatches(out_dir, hf_tokenizer, texts)

genai_config.json names the graph's inputs and outputs and the KV-cache layout: one
`past_key_values.{i}.key/value` [B, kv_heads, S, head_dim] per layer in, `present.{i}.*`
out; `past_present_share_buffer` says whether genai may bind one buffer of `max_length`
positions as both (our GroupQueryAttention graphs write the new positions in place) or
must feed each step's present back as the next past (a concatenating graph).
`search.max_length` is the default buffer size (an app raises it with
`set_search_options(max_length=...)` up to `context_length`): genai allocates the whole
buffer when a generator starts, so a 32k context by default would cost GBs of cache.

onnxruntime-genai reads the Hugging Face tokenizer files itself (tokenizer.json and
tokenizer_config.json, byte-level BPE and SentencePiece-style BPE alike). It encodes without
special tokens unless told (`update_options(add_special_tokens="true")`); whether BOS is then
added comes from `add_bos_token` in tokenizer_config.json, which transformers does not always
write, so the export writes what the Hugging Face tokenizer does (and checks that this
changes nothing for transformers). The chat template goes into tokenizer_config.json too,
where genai's `apply_chat_template` looks for it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

GENAI_CONFIG = "genai_config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
DEFAULT_MAX_LENGTH = 2048          # search.max_length: the KV buffer genai allocates by default
# config.model_type values onnxruntime-genai 0.18 runs as decoder-only LLMs; anything else is
# described as the generic "decoder".
GENAI_TYPES = ("llama", "mistral", "qwen2", "gemma2", "gemma3_text")
_PROBES = ("Hello world. Die Hauptstadt", "Москва 北京 القاهرة")


def _ids(value) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def eos_ids(model, tokenizer) -> list[int]:
    """EOS of the generation config and config, plus the tokenizer's end-of-turn tokens (the
    engines stop at those too)."""
    from ...runtime.engines.base import END_OF_TURN

    gen = getattr(model, "generation_config", None)
    ids = _ids(getattr(gen, "eos_token_id", None)) + _ids(model.config.eos_token_id) \
        + _ids(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    ids += [vocab[t] for t in END_OF_TURN if t in vocab]
    return list(dict.fromkeys(ids))


def genai_config(model, tokenizer, io: dict, shared_kv: bool) -> dict:
    """The genai_config.json of an export. io: {"inputs": [...], "outputs": [...],
    "kv_heads": int, "head_dim": int, "vocab": int} of the graph."""
    cfg = model.config
    gen = getattr(model, "generation_config", None)
    eos = eos_ids(model, tokenizer)
    bos = _ids(cfg.bos_token_id) or _ids(tokenizer.bos_token_id)
    pad = _ids(cfg.pad_token_id) or _ids(tokenizer.pad_token_id) or eos[:1]
    n_layers = sum(1 for n in io["inputs"] if n.endswith(".key"))
    context = int(getattr(cfg, "max_position_embeddings", 0) or DEFAULT_MAX_LENGTH)
    inputs = {"input_ids": "input_ids", "attention_mask": "attention_mask",
              "past_key_names": "past_key_values.%d.key", "past_value_names": "past_key_values.%d.value"}
    if "position_ids" in io["inputs"]:
        inputs["position_ids"] = "position_ids"
    sampling = {k: getattr(gen, k, None) for k in ("do_sample", "temperature", "top_k", "top_p",
                                                   "repetition_penalty")}
    return {
        "model": {
            "type": cfg.model_type if cfg.model_type in GENAI_TYPES else "decoder",
            "vocab_size": int(io["vocab"]),
            "context_length": context,
            "bos_token_id": bos[0] if bos else None,
            "eos_token_id": eos if len(eos) > 1 else eos[0],
            "pad_token_id": pad[0],
            "decoder": {
                "filename": "model.onnx",
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "head_size": int(io["head_dim"]),
                "hidden_size": int(cfg.hidden_size),
                "num_attention_heads": int(cfg.num_attention_heads),
                "num_key_value_heads": int(io["kv_heads"]),
                "num_hidden_layers": n_layers,
                "inputs": inputs,
                "outputs": {"logits": "logits", "present_key_names": "present.%d.key",
                            "present_value_names": "present.%d.value"},
            },
        },
        "search": {
            "max_length": min(context, DEFAULT_MAX_LENGTH),
            "min_length": 0,
            "past_present_share_buffer": shared_kv,
            # the model's generation_config (transformers' defaults where it says nothing)
            "do_sample": bool(sampling["do_sample"]),
            "temperature": float(sampling["temperature"] or 1.0),
            "top_k": int(50 if sampling["top_k"] is None else sampling["top_k"]),
            "top_p": float(1.0 if sampling["top_p"] is None else sampling["top_p"]),
            "repetition_penalty": float(sampling["repetition_penalty"] or 1.0),
            "num_beams": 1,
            "num_return_sequences": 1,
            "early_stopping": True,
            "length_penalty": 1.0,
            "no_repeat_ngram_size": 0,
            "diversity_penalty": 0.0,
        },
    }


def _adds_bos(tokenizer) -> bool:
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos] \
        and tokenizer("a", add_special_tokens=False)["input_ids"][:1] != [bos]


def explicit_tokenizer_config(out_dir: Path, tokenizer) -> dict:
    """Write `add_bos_token`/`add_eos_token` (what the tokenizer does) and the chat template
    into tokenizer_config.json; undo it if transformers would then tokenize differently.
    Returns the keys written."""
    from transformers import AutoTokenizer

    path = out_dir / TOKENIZER_CONFIG
    before = path.read_text(encoding="utf-8")
    cfg = json.loads(before)
    added = {}
    if not isinstance(cfg.get("add_bos_token"), bool):
        added["add_bos_token"] = _adds_bos(tokenizer)
    if not isinstance(cfg.get("add_eos_token"), bool):
        added["add_eos_token"] = False if tokenizer.eos_token_id is None else \
            tokenizer("a")["input_ids"][-1:] == [tokenizer.eos_token_id]
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str) and "chat_template" not in cfg:
        added["chat_template"] = template
    if not added:
        return {}
    path.write_text(json.dumps({**cfg, **added}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    reread = AutoTokenizer.from_pretrained(str(out_dir), fix_mistral_regex=False)
    if any(reread(t)["input_ids"] != tokenizer(t)["input_ids"] for t in _PROBES):
        path.write_text(before, encoding="utf-8")       # leave transformers' behaviour alone
        return {}
    return {k: v for k, v in added.items() if k != "chat_template"} | (
        {"chat_template": True} if "chat_template" in added else {})


def write_genai_files(out_dir: Path, lm, io: dict, shared_kv: bool) -> dict:
    """genai_config.json plus explicit tokenizer settings in `out_dir`; returns the summary."""
    from ...io import write_json

    cfg = genai_config(lm.model, lm.tokenizer, io, shared_kv)
    write_json(out_dir / GENAI_CONFIG, cfg)
    written = explicit_tokenizer_config(out_dir, lm.tokenizer)
    return {"config": GENAI_CONFIG, "type": cfg["model"]["type"],
            "context_length": cfg["model"]["context_length"],
            "max_length": cfg["search"]["max_length"],
            "past_present_share_buffer": shared_kv,
            "eos_token_id": cfg["model"]["eos_token_id"],
            "tokenizer_config_written": written}


# ----------------------------------------------------------------------------- running

def read_config(out_dir: str | Path) -> dict:
    return json.loads((Path(out_dir) / GENAI_CONFIG).read_text(encoding="utf-8"))



def load(out_dir: str | Path, threads: int | None = None, providers: Sequence[str] = ()):
    """og.Model of an export; `threads` sets the decoder session's intra-op threads."""
    import onnxruntime_genai as og

    config = og.Config(str(out_dir))
    if threads:
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {
            "intra_op_num_threads": int(threads)}}}}))
    if providers:
        config.clear_providers()
        for p in providers:
            config.append_provider(p)
    return og.Model(config)


def genai_logits_fn(model, decode_steps: int = 8, max_length: int | None = None):
    """A parity.LogitsFn through onnxruntime-genai: prefill all but the last `decode_steps`
    tokens with `append_tokens`, then one token at a time — each step's logits read back
    from the generator (`get_output("logits")`)."""
    import onnxruntime_genai as og

    if not isinstance(model, og.Model):
        model = load(model)

    def fn(ids: Sequence[int]) -> np.ndarray:
        ids = [int(i) for i in ids]
        k = max(0, min(decode_steps, len(ids) - 1))
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=max_length or len(ids) + 1)
        gen = og.Generator(model, params)
        gen.append_tokens(np.array(ids[:len(ids) - k], np.int32))
        parts = [np.array(gen.get_output("logits"))[0]]
        for tok in ids[len(ids) - k:]:
            gen.append_tokens(np.array([tok], np.int32))
            parts.append(np.array(gen.get_output("logits"))[0])
        return np.concatenate(parts, axis=0).astype(np.float32, copy=False)

    return fn


def tokenizer_mismatches(model, hf_tokenizer, texts: Sequence[str]) -> list[str]:
    """Texts that onnxruntime-genai's tokenizer (reading the export's files) encodes, with
    special tokens, or decodes differently from the Hugging Face tokenizer."""
    import onnxruntime_genai as og

    if not isinstance(model, og.Model):
        model = load(model)
    tok = og.Tokenizer(model)
    tok.update_options(add_special_tokens="true")
    bad = []
    for t in texts:
        want = list(hf_tokenizer(t)["input_ids"])
        got = [int(i) for i in tok.encode(t)]
        if got != want or tok.decode(np.array(want, np.int32)) != \
                hf_tokenizer.decode(want, skip_special_tokens=True):
            bad.append(t)
    return bad

"""Tiny randomly initialised models of every supported family, built on the fly.

Used by the fast tests (and handy for trying a pipeline in seconds): each
family is a small config with the family's real structure (gated FFN, GQA,
Gemma's norms and sliding windows), and a small byte-level BPE tokenizer
trained on a few kilobytes of multilingual text, so text in any script encodes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

# A little text in several scripts, used when no corpus text is given.
_SAMPLE = [
    "The capital of France is Paris. It is a large city on the river Seine.",
    "Die Hauptstadt von Deutschland ist Berlin. Berlin ist eine große Stadt.",
    "La capitale de la France est Paris. C'est une grande ville.",
    "Москва — столица России. Это большой город на реке Москве.",
    "北京是中国的首都。它是一个很大的城市。",
    "東京は日本の首都です。大きな都市です。",
    "서울은 한국의 수도입니다. 큰 도시입니다.",
    "القاهرة هي عاصمة مصر. إنها مدينة كبيرة.",
    "दिल्ली भारत की राजधानी है। यह एक बड़ा शहर है।",
]

COMMON = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.1,
              bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)


def _config(model_type: str, vocab_size: int):
    from transformers import (Gemma2Config, Gemma3TextConfig, LlamaConfig, MistralConfig,
                              Qwen2Config)

    c = dict(COMMON, vocab_size=vocab_size)
    if model_type == "llama":
        return LlamaConfig(**c, rms_norm_eps=1e-5)
    if model_type == "mistral":
        return MistralConfig(**c, head_dim=16, sliding_window=None)
    if model_type == "qwen2":
        return Qwen2Config(**c, use_sliding_window=False)
    if model_type == "gemma2":
        return Gemma2Config(**dict(c, tie_word_embeddings=True), head_dim=16,
                            query_pre_attn_scalar=16, sliding_window=32,
                            final_logit_softcapping=30.0, attn_logit_softcapping=50.0)
    if model_type == "gemma3_text":
        return Gemma3TextConfig(**dict(c, tie_word_embeddings=True), head_dim=16,
                                query_pre_attn_scalar=16, sliding_window=32,
                                layer_types=["sliding_attention", "sliding_attention",
                                             "sliding_attention", "full_attention"])
    raise ValueError(f"no tiny config for '{model_type}'")


TINY_FAMILIES = ("llama", "mistral", "qwen2", "gemma2", "gemma3_text")


def tiny_tokenizer(texts: Sequence[str] | None = None, vocab_size: int = 512):
    """A byte-level BPE tokenizer trained on `texts` (every byte encodes)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(list(texts or _SAMPLE) * 2, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")
    # a plain-text chat format, so chat endpoints can be exercised on tiny models
    fast.chat_template = ("{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n"
                          "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")
    return fast


def tiny_spm_tokenizer(texts: Sequence[str] | None = None, vocab_size: int = 640):
    """A SentencePiece BPE tokenizer with byte fallback trained on `texts`, Gemma-style
    (identity normalizer, no dummy prefix, "\n" and "\t" user-defined pieces), a fast tokenizer
    whose saved folder carries the SentencePiece `tokenizer.model` too."""
    import io
    import tempfile

    import sentencepiece as spm
    from transformers import GemmaTokenizerFast

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(texts or _SAMPLE) * 2), model_writer=buf, model_type="bpe",
        vocab_size=vocab_size, byte_fallback=True, character_coverage=1.0,
        normalization_rule_name="identity", add_dummy_prefix=False, remove_extra_whitespaces=False,
        hard_vocab_limit=False, pad_id=0, eos_id=1, bos_id=2, unk_id=3, user_defined_symbols=["\n", "\t"],
        minloglevel=2, num_threads=1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenizer.model"
        path.write_bytes(buf.getvalue())
        fast = GemmaTokenizerFast(vocab_file=str(path), bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", pad_token="<pad>")
        fast.backend_tokenizer
        fast.vocab_file = None
    fast.spm_proto = buf.getvalue()       # build_tiny_model saves it as tokenizer.model
    fast.chat_template = ("{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n"
                          "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")
    return fast


TOKENIZER_KINDS = ("bpe", "spm")


def build_tiny_model(model_type: str, out_dir: str | Path | None = None, seed: int = 0,
                     texts: Sequence[str] | None = None, tokenizer: str = "bpe",
                     vocab_size: int | None = None):
    """(model, tokenizer) of a tiny random `model_type`; saved to out_dir when given.
    tokenizer: "bpe" (byte-level BPE) or "spm" (SentencePiece BPE with byte fallback), trained
    on `texts` with `vocab_size` tokens (default: the kind's small default)."""
    import torch
    from transformers import AutoModelForCausalLM

    if tokenizer not in TOKENIZER_KINDS:
        raise ValueError(f"tokenizer kind '{tokenizer}': choose one of {TOKENIZER_KINDS}")
    size = {} if vocab_size is None else {"vocab_size": vocab_size}
    tokenizer = tiny_tokenizer(texts, **size) if tokenizer == "bpe" else tiny_spm_tokenizer(texts, **size)
    torch.manual_seed(seed)
    config = _config(model_type, len(tokenizer))
    config.pad_token_id, config.bos_token_id, config.eos_token_id = (
        tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    if out_dir is not None:
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
        if getattr(tokenizer, "spm_proto", None):
            (Path(out_dir) / "tokenizer.model").write_bytes(tokenizer.spm_proto)
    return model, tokenizer

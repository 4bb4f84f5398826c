"""Vocabulary trimming on tiny models of both tokenizer families — SentencePiece BPE with
byte fallback (Gemma-style, tied head) and byte-level BPE (untied head) — plus one
integration test on the embedded Gemma 3 270M.

Proved here: any string encodes and decodes back to itself with the trimmed tokenizer;
target-language text tokenizes exactly as before (ids renumbered); the trimmed model's
logits over the kept tokens equal the untrimmed model's; the saved directory reloads;
GGUF exports load in stock llama.cpp and tokenize like the trimmed HF tokenizer (which
tokenizes target text like the original); ONNX exports run.
"""
from __future__ import annotations

import copy
import json
import random

import numpy as np
import pytest
import torch

from babel_edge import vocab
from babel_edge.errors import UserError
from babel_edge.models import load_model
from babel_edge.models.tiny import build_tiny_model
from babel_edge.prune import PruningPlan
from babel_edge.prune.model_dir import ffn_widths, save_pruned

LANGS = ["en", "de"]
N_PARAS = 300                     # profile paragraphs per language that choose the tokens
KINDS = {"spm": ("gemma3_text", vocab.SPM), "bpe": ("llama", vocab.BYTE_LEVEL)}
STRINGS = [
    "", " ", "  leading and trailing  ", "Hello, world!", "Grüße aus Köln — ça va?",
    "😀🎉👍🏽 family: 👨‍👩‍👧", "北京是中国的首都。東京は日本の首都です。", "서울은 한국의 수도입니다.",
    "مرحبا بالعالم", "שלום עולם", "Ελληνικά κείμενα", "ＡＢＣ１２３ full width",
    "control\x00\x01\x07\x1b[0m chars\ttab\r\nnewline\n\n\n", "\u200b\u200d\ufeff zero width",
    "<s> </s> <pad> <unk> look like specials", "a" * 300, "\U0010fffd private use \ue000",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def corpus():
    from babel_edge.corpus import load_corpus

    return load_corpus()


@pytest.fixture(scope="module", params=list(KINDS))
def trimmed(request, corpus, tmp_path_factory):
    """(kind, untrimmed LoadedModel, trimmed model, TrimmedVocab, saved directory)."""
    family, _ = KINDS[request.param]
    d = tmp_path_factory.mktemp(f"tiny-{request.param}")
    build_tiny_model(family, d, seed=0, tokenizer=request.param)
    lm = load_model(str(d))
    model = copy.deepcopy(lm.model)
    tv = vocab.trim_loaded(model, lm.tokenizer, LANGS, lambda l: corpus.texts(l, "profile")[:N_PARAS],
                           model_dir=lm.path, eval_for=lambda l: corpus.texts(l, "eval")[:100],
                           other_langs=["ru", "zh", "ar"], evidence="text")
    out = save_pruned(model, d.parent / f"{d.name}-trimmed", trim_plan(model, LANGS, tv.section),
                      source_dir=lm.path, vocab=tv)
    return request.param, lm, model, tv, out


def trim_plan(model, langs, section):
    """The plan of a run that only trimmed the vocabulary."""
    plan = PruningPlan.unpruned(ffn_widths(model), langs)
    plan.vocab = section
    return plan


def _random_strings(n=40, seed=0):
    rng = random.Random(seed)
    pools = [(0x20, 0x7e), (0xa0, 0x24f), (0x400, 0x4ff), (0x600, 0x6ff), (0x4e00, 0x9fff),
             (0x1f300, 0x1faff), (0x0, 0x1f)]
    out = []
    for _ in range(n):
        lo, hi = rng.choice(pools)
        out.append("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 30))))
    return out


# ------------------------------------------------------------------ language evidence

@pytest.fixture(scope="module")
def spm_model(tmp_path_factory, corpus):
    """A tiny Gemma 3 with a 2k SentencePiece-BPE vocabulary trained on corpus text."""
    d = tmp_path_factory.mktemp("tiny-spm-2k")
    texts = [t for l in ("en", "de", "fr", "ru") for t in corpus.texts(l, "profile")[:400]]
    build_tiny_model("gemma3_text", d, seed=0, tokenizer="spm", texts=texts, vocab_size=2048)
    return load_model(str(d))


def test_common_symbols_are_those_of_no_particular_script():
    """Kept whatever the evidence: punctuation, ASCII digits, whitespace runs, Latin-1 and
    general punctuation, combining marks; not another script's digits or signs."""
    from babel_edge.vocab.choose import common_symbols

    for t in (" --", "...", "  ", "12", " «", "»", "’", "€", "§", "\u0301", "।"):
        assert common_symbols(t), repr(t)
    for t in ("১২", "٠١", " ১৪", "๚", "a.", " é", "a1", "\u2500\u2500", "😀"):
        assert not common_symbols(t), repr(t)


def test_language_evidence_respects_the_size_and_is_deterministic(spm_model, corpus):
    from babel_edge.vocab.choose import choose_kept, config_token_ids
    from babel_edge.vocab.evidence import gather

    lm = spm_model
    src = vocab.source_vocab(lm.tokenizer, lm.path)
    fit = {l: corpus.texts(l, "profile")[:200] for l in LANGS}
    ev = gather(lm.tokenizer, LANGS, fit.__getitem__, words_top=3000)
    assert all("wordfreq" in " ".join(v) for v in ev.sources.values())
    texts = [t for l in LANGS for t in fit[l]]
    a = choose_kept(lm.tokenizer, src, texts, config_token_ids(lm.model), evidence=ev, size=900,
                    scripts=["Latn"], symbols=True)
    b = choose_kept(lm.tokenizer, src, texts, config_token_ids(lm.model),
                    evidence=gather(lm.tokenizer, LANGS, fit.__getitem__, words_top=3000), size=900,
                    scripts=["Latn"], symbols=True)
    assert a == b                                               # deterministic
    kept, counts, det = a
    assert len(kept) <= 900 and len(kept) > 850                 # filled up to the size
    assert counts["text"] + counts["words"] > 0 and counts["symbols"] > 0 and counts["script"] > 0
    bigger = choose_kept(lm.tokenizer, src, texts, config_token_ids(lm.model), evidence=ev,
                         size=1400, scripts=["Latn"], symbols=True)
    assert set(kept) <= set(bigger[0])                          # a larger size keeps a superset
    assert bigger[2]["evidence_coverage"] > det["evidence_coverage"]
    # every Latin letter survives as a single-character token, whatever the text saw
    surf = {lm.tokenizer.convert_ids_to_tokens(i) for i in kept}
    for ch in "aäàçéßœ":
        if ch in lm.tokenizer.get_vocab():
            assert ch in surf, ch


def test_trimmed_vocabulary_round_trips_text_it_never_saw(spm_model, corpus):
    """Eval-split text (never read by the choice) round-trips and inflates little; the plan's
    section says which evidence and size were used."""
    lm = spm_model
    model = copy.deepcopy(lm.model)
    tv = vocab.trim_loaded(model, lm.tokenizer, LANGS, lambda l: corpus.texts(l, "profile")[:200],
                           model_dir=lm.path, eval_for=lambda l: corpus.texts(l, "eval")[:80],
                           size=1200, scripts=["Latn"], words_top=3000)
    s = tv.section
    assert s["kept"] <= 1200 and s["chosen_from"]["evidence"] == "language"
    assert s["chosen_from"]["size"] == 1200 and s["evidence_coverage"] > 0.9
    for lang in LANGS:
        r = s["eval"][lang]
        assert r["roundtrip_failures"] == 0 and r["tokens_ratio"] < 1.15
    for text in corpus.texts("fr", "eval")[:30]:
        ids = tv.tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tv.tokenizer.decode(ids) == text


# ------------------------------------------------------------------ the tokenizer

def test_kind_and_kept_set(trimmed):
    kind, lm, model, tv, _ = trimmed
    s = tv.section
    assert tv.kind == KINDS[kind][1] == s["tokenizer_kind"]
    assert tv.kept == sorted(tv.kept) and s["kept"] == len(tv.kept) == len(tv.tokenizer)
    assert s["kept"] < s["vocab_before"] == len(lm.tokenizer)
    assert s["kept_by_reason"]["bytes"] + s["kept_by_reason"]["special"] >= 256
    # every special token survives, with its text
    for t in lm.tokenizer.all_special_tokens:
        assert t in tv.tokenizer.get_vocab()
    assert s["parity"]["max_abs_diff"] <= vocab.PARITY_MAX_ABS
    assert s["unreached_by_own_text"] == 0


def test_any_string_round_trips(trimmed):
    _, _, _, tv, _ = trimmed
    tok = tv.tokenizer
    for text in STRINGS + _random_strings():
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert all(0 <= i < len(tv.kept) for i in ids)
        assert tok.decode(ids) == text, repr(text)


def test_target_text_tokenizes_as_before(trimmed, corpus):
    _, lm, _, tv, _ = trimmed
    new_id = {o: n for n, o in enumerate(tv.kept)}
    texts = [t for l in LANGS for t in corpus.texts(l, "profile")[:N_PARAS]]
    for text in texts:
        old = lm.tokenizer(text)["input_ids"]                  # with BOS, as models see it
        assert tv.tokenizer(text)["input_ids"] == [new_id[i] for i in old]
    ev = tv.section["eval"]
    assert set(ev) == {"en", "de", "ru", "zh", "ar"}
    for lang, r in ev.items():
        assert r["roundtrip_failures"] == 0
        if r["target"]:
            assert r["unchanged_share"] > 0.8 and r["token_coverage"] > 0.95
        else:                                                  # degrades, never fails
            assert r["tokens_ratio"] >= 1.0


def test_logits_over_kept_tokens_equal_the_untrimmed_model(trimmed, corpus):
    from babel_edge.exporters.parity import compare, torch_logits_fn

    _, lm, model, tv, _ = trimmed
    new_id = {o: n for n, o in enumerate(tv.kept)}
    seqs = [lm.tokenizer(t)["input_ids"][:48] for l in LANGS for t in corpus.texts(l, "profile")[:3]]
    ref = torch_logits_fn(lm.model)
    small = torch_logits_fn(model)

    def trimmed_fn(ids):                     # same text in the new ids, logits back in old columns
        out = np.zeros((len(ids), len(lm.tokenizer)), dtype=np.float32)
        out[:, tv.kept] = small([new_id[i] for i in ids])
        return out

    rep = compare(ref, trimmed_fn, seqs, [], "fp32", vocab=tv.kept)
    assert rep.passed and rep.max_abs_diff < 1e-4 and rep.argmax_agreement == 1.0


def test_saved_directory_reloads_with_its_tokenizer(trimmed):
    kind, _, model, tv, out = trimmed
    lm2 = load_model(str(out))
    assert lm2.model.config.vocab_size == len(tv.kept)
    assert lm2.model.get_input_embeddings().weight.shape[0] == len(tv.kept)
    assert lm2.tokenizer.get_vocab() == tv.tokenizer.get_vocab()
    text = "Die Hauptstadt von Deutschland ist Berlin. 😀"
    ids = lm2.tokenizer(text)["input_ids"]
    assert ids == tv.tokenizer(text)["input_ids"]
    with torch.inference_mode():
        a = lm2.model(input_ids=torch.tensor([ids])).logits
        b = model(input_ids=torch.tensor([ids])).logits
    assert torch.allclose(a, b, atol=1e-5)
    plan = json.loads((out / "pruning_plan.json").read_text())
    assert plan["vocab"]["kept"] == len(tv.kept) and plan["vocab"]["kept_ids"] == tv.kept
    files = {p.name for p in out.iterdir()}
    assert "tokenizer.json" in files
    if kind == "spm":
        # a real SentencePiece model over the kept pieces, with the original scores
        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2 as pb

        src = vocab.source_vocab(load_model(str(out.parent / out.name.replace("-trimmed", ""))).tokenizer,
                                 out.parent / out.name.replace("-trimmed", ""))
        m = pb.ModelProto()
        m.ParseFromString((out / "tokenizer.model").read_bytes())
        assert [p.piece for p in m.pieces] == [src.tokens[i] for i in tv.kept]
        assert [p.score for p in m.pieces] == pytest.approx([src.scores[i] for i in tv.kept])
        sp = spm.SentencePieceProcessor(model_proto=(out / "tokenizer.model").read_bytes())
        assert sp.get_piece_size() == len(tv.kept)
    else:
        assert {"vocab.json", "merges.txt"} <= files


def test_merge_replay_follows_ranks():
    vocab_ = {c: i for i, c in enumerate("abc")} | {"ab": 3, "bc": 4, "abc": 5}
    ranks = {("b", "c"): 0, ("a", "b"): 1, ("a", "bc"): 2, ("ab", "c"): 3}
    final, steps = vocab.merge_steps("abc", ranks, vocab_, byte_fallback=True)
    assert final == ["abc"] and steps == [("b", "c"), ("a", "bc")]
    final, steps = vocab.merge_steps("aé", ranks, vocab_, byte_fallback=True)
    assert final == ["a", "<0xC3>", "<0xA9>"] and steps == []


# ------------------------------------------------------------------ exports

def test_gguf_export_loads_in_llama_cpp_and_tokenizes_the_same(trimmed, corpus, tmp_path):
    from llama_cpp import Llama

    from babel_edge.exporters.gguf import export_gguf
    from babel_edge.exporters.gguf.llama import _quiet_llama
    from babel_edge.exporters.parity import PARITY_PROMPTS

    kind, lm, _, tv, out = trimmed
    s = export_gguf(str(out), tmp_path / "t.gguf", "f32", threads=1, verbose=False)
    assert s["parity"]["passed"] and s["tokenizer"]["check"]["mismatched"] == []
    assert s["tokenizer"]["tokens"] == len(tv.kept)
    if kind == "spm":
        assert s["tokenizer"]["scores_from"] == "tokenizer.model"
    from babel_edge.models.gguf_tokenizer import gguf_fields, gguf_metadata

    meta = gguf_metadata(tmp_path / "t.gguf")            # the fast header reader = gguf-py's
    assert meta == {k: v for k, v in gguf_fields(tmp_path / "t.gguf").items() if not k.startswith("GGUF.")}
    assert meta["babel_edge.vocab.kept"] == len(tv.kept) == len(meta["tokenizer.ggml.tokens"])
    new_id = {o: n for n, o in enumerate(tv.kept)}
    with _quiet_llama():
        llm = Llama(model_path=str(tmp_path / "t.gguf"), vocab_only=True, verbose=False)
    try:
        targets = [t for l in LANGS for t in corpus.texts(l, "eval")[:40]]
        for text in targets + PARITY_PROMPTS + STRINGS[1:] + _random_strings():
            got = llm.tokenize(text.encode(), add_bos=False, special=True)   # HF parses specials too
            want = tv.tokenizer(text, add_special_tokens=False)["input_ids"]
            assert got == want, repr(text[:40])
        for text in [t for l in LANGS for t in corpus.texts(l, "profile")[:40]]:
            old = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
            assert llm.tokenize(text.encode(), add_bos=False, special=False) == [new_id[i] for i in old]
    finally:
        with _quiet_llama():
            llm.close()


def test_onnx_export_runs(trimmed, tmp_path):
    from babel_edge.exporters.onnx import OnnxCausalLM, export_onnx

    _, _, _, tv, out = trimmed
    s = export_onnx(str(out), tmp_path / "onnx", "fp32", verbose=False)
    assert s["parity"]["passed"]
    ids = tv.tokenizer("Die Hauptstadt von Deutschland")["input_ids"]
    logits = OnnxCausalLM(tmp_path / "onnx", threads=1).logits(ids)
    assert logits.shape == (len(ids), len(tv.kept))
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(str(tmp_path / "onnx")).get_vocab() == tv.tokenizer.get_vocab()


# ------------------------------------------------------------------ bad input

def test_bad_input_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        vocab.read_user_text([tmp_path / "missing.txt"])
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(UserError, match="empty"):
        vocab.read_user_text(tmp_path / "empty.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00abc")
    with pytest.raises(UserError, match="UTF-8"):
        vocab.read_user_text(tmp_path / "bin.txt")
    (tmp_path / "ok.txt").write_text("eins\n\nzwei\r\n\r\ndrei")
    assert vocab.read_user_text(tmp_path / "ok.txt") == ["eins", "zwei", "drei"]
    with pytest.raises(UserError, match="BPE"):
        vocab.tokenizer_kind({"model": {"type": "WordPiece"}})
    with pytest.raises(UserError, match="encodes any text"):
        vocab.tokenizer_kind({"model": {"type": "BPE"}, "pre_tokenizer": {"type": "Whitespace"}})


def test_cli_prune_trim_vocab(tmp_path, tiny_dirs, capsys, monkeypatch):
    from babel_edge.cli import main

    monkeypatch.setenv("BABEL_EDGE_CACHE", str(tmp_path / "cache"))
    extra = tmp_path / "mine.txt"
    extra.write_text("Zqxj vlorp — a made-up word list.\n\nAnother paragraph.")
    out = tmp_path / "p"
    rc = main(["prune", "--model", str(tiny_dirs["qwen2"]), "--langs", "en,fr", "--rate", "0.5",
               "--strategy", "magnitude", "--schedule", "uniform", "--no-compensate",
               "--trim-vocab", "--vocab-text", str(extra), "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "vocabulary" in printed and "tokens" in printed
    plan = json.loads((out / "pruning_plan.json").read_text())
    assert plan["vocab"]["chosen_from"]["user_paragraphs"] == 2
    lm = load_model(str(out))
    assert lm.model.config.vocab_size == plan["vocab"]["kept"]
    text = "Zqxj vlorp — a made-up word list."
    new_id = {o: n for n, o in enumerate(plan["vocab"]["kept_ids"])}
    old = load_model(str(tiny_dirs["qwen2"])).tokenizer(text)["input_ids"]
    assert lm.tokenizer(text)["input_ids"] == [new_id[i] for i in old]
    # bad input: one line, exit 2
    assert main(["prune", "--model", str(tiny_dirs["qwen2"]), "--langs", "en", "--rate", "0.5",
                 "--strategy", "magnitude", "--schedule", "uniform", "--no-compensate",
                 "--trim-vocab", "--vocab-text", str(tmp_path / "nope.txt"), "--out",
                 str(tmp_path / "q")]) == 2
    assert main(["prune", "--model", str(tiny_dirs["qwen2"]), "--langs", "en", "--rate", "0.5",
                 "--strategy", "magnitude", "--schedule", "uniform", "--no-compensate",
                 "--vocab-text", str(extra), "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("error" in e for e in err)


def test_build_with_trim_vocab(tiny_dirs, tmp_path, monkeypatch):
    from babel_edge.pipeline import BuildOptions, build

    monkeypatch.setenv("BABEL_EDGE_CACHE", str(tmp_path / "cache"))
    from babel_edge.prune import PruneOptions

    opts = BuildOptions(langs=["en", "de"], rate=0.5, model=str(tiny_dirs["llama"]), gguf_quant="f32",
                        onnx_precision=None, tokens_per_lang=256, bench=False,
                        prune=PruneOptions(trim_vocab=True),
                        other_langs=["ru"])
    summary = build(opts, tmp_path / "out")
    plan = json.loads((tmp_path / "out" / "pruned" / "pruning_plan.json").read_text())
    assert summary["trim_vocab"] and plan["vocab"]["kept"] < plan["vocab"]["vocab_before"]
    assert set(plan["vocab"]["eval"]) == {"en", "de", "ru"}
    import gguf

    r = gguf.GGUFReader(summary["artefacts"]["gguf_pruned"])
    assert len(r.fields["tokenizer.ggml.tokens"].data) == plan["vocab"]["kept"]
    assert r.fields["babel_edge.vocab.kept"].contents() == plan["vocab"]["kept"]


# ------------------------------------------------------------------ the embedded model

@pytest.mark.integration
def test_embedded_trim_for_en_de_fr(corpus, tmp_path):
    """Gemma 3 270M, {en, de, fr}: a small kept set, exact on the targets, llama.cpp agrees."""
    import gguf
    from llama_cpp import Llama

    from babel_edge.exporters.gguf import layout as gguf_layout
    from babel_edge.exporters.gguf import tensors as gguf_tensors
    from babel_edge.exporters.gguf import vocab as gguf_vocab
    from babel_edge.exporters.gguf.llama import _quiet_llama
    from babel_edge.exporters.parity import PARITY_PROMPTS

    lm = load_model(None)                    # its own copy: trimming changes the model in place
    langs = ["en", "de", "fr"]
    torch.set_num_threads(2)
    tv = vocab.trim_loaded(lm.model, lm.tokenizer, langs, lambda l: corpus.texts(l, "profile"),
                           model_dir=lm.path, eval_for=lambda l: corpus.texts(l, "eval"),
                           other_langs=["ru", "zh", "ar"], evidence="text")
    s = tv.section
    assert s["tokenizer_kind"] == vocab.SPM and s["vocab_before"] == 262_144
    assert 10_000 < s["kept"] < 40_000
    assert s["parity"]["max_abs_diff"] <= vocab.PARITY_MAX_ABS
    for lang in langs:
        assert s["eval"][lang]["token_coverage"] > 0.95 and s["eval"][lang]["tokens_ratio"] < 1.1
    for lang in ("ru", "zh", "ar"):
        assert s["eval"][lang]["roundtrip_failures"] == 0
    # llama.cpp reads the trimmed vocabulary (tokens, original scores, types) from a
    # vocabulary-only GGUF and tokenizes exactly like the trimmed HF tokenizer
    d = tmp_path / "m"
    save_pruned(lm.model, d, trim_plan(lm.model, langs, s), source_dir=lm.path, vocab=tv)
    v = gguf_vocab.vocab_from_tokenizer(tv.tokenizer, len(tv.kept), d)
    assert v.scores_from == "tokenizer.model"
    layout = gguf_layout.choose_layout(lm.model, None)
    w = gguf.GGUFWriter(str(tmp_path / "vocab.gguf"), layout.target.arch)
    gguf_tensors.write_hparams(w, lm.model, layout)
    v.write(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with _quiet_llama():
        llm = Llama(model_path=str(tmp_path / "vocab.gguf"), vocab_only=True, verbose=False)
    try:
        texts = ([t for l in langs for t in corpus.texts(l, "eval")[:60]] + PARITY_PROMPTS
                 + STRINGS[1:] + [t for l in ("ru", "zh", "ar") for t in corpus.texts(l, "eval")[:10]])
        for text in texts:
            want = tv.tokenizer(text, add_special_tokens=False)["input_ids"]
            assert llm.tokenize(text.encode(), add_bos=False, special=True) == want, repr(text[:40])
    finally:
        with _quiet_llama():
            llm.close()


def test_a_traditional_chinese_target_keeps_its_script_and_tokenizes_as_before(corpus, tmp_path):
    """zh-Hant on a tiny SentencePiece model whose vocabulary holds Simplified and Traditional
    characters: every single-character token of the target script is kept (Traditional ones the
    fitting text never showed included), and Traditional text from the eval split — never read
    by the choice — tokenizes exactly as before trimming (ids renumbered) and round-trips."""
    from babel_edge.prune.run import target_scripts

    texts = [t for l in ("zh-Hant", "zh-Hans", "en") for t in corpus.texts(l, "profile")[:300]]
    build_tiny_model("gemma3_text", tmp_path / "m", seed=0, tokenizer="spm", texts=texts,
                     vocab_size=4096)
    lm = load_model(str(tmp_path / "m"))
    model = copy.deepcopy(lm.model)
    scripts = target_scripts(["zh-Hant"])
    assert "Hani" in scripts
    fit = corpus.texts("zh-Hant", "profile")[:100]
    tv = vocab.trim_loaded(model, lm.tokenizer, ["zh-Hant"], lambda l: fit, model_dir=lm.path,
                           scripts=scripts)
    kept = set(tv.kept)
    han = {t: i for t, i in lm.tokenizer.get_vocab().items() if len(t) == 1 and "\u4e00" <= t <= "\u9fff"}
    traditional = [c for c in "們個來說這會對國學時" if c in han]
    assert len(han) > 500 and traditional
    assert all(i in kept for i in han.values())
    assert len(tv.kept) < len(lm.tokenizer)                   # something was trimmed
    new_id = {o: n for n, o in enumerate(tv.kept)}
    for text in fit:                                          # the target's text: token-exact
        old = lm.tokenizer(text)["input_ids"]
        assert tv.tokenizer(text)["input_ids"] == [new_id[i] for i in old]
    before = after = 0
    for text in corpus.texts("zh-Hant", "eval")[:60]:         # never read: round-trips, inflates little
        ids = tv.tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tv.tokenizer.decode(ids) == text
        before += len(lm.tokenizer(text, add_special_tokens=False)["input_ids"])
        after += len(ids)
    assert after / before < 1.25, after / before

"""GGUF export: every supported family, dense and with per-layer FFN widths, in real llama.cpp.

Each export already runs parity (torch vs llama.cpp) and raises on a miss; the
tests check what was written (architecture, widths, tensor types, tokenizer,
metadata), that an independent llama-cpp-python instance loads and generates,
and the failure paths (parity miss, bad input -> exit 2 with one line).
Tiny models run single-threaded: on a shared 2-core machine ggml's and torch's
spinning worker threads are ~100x slower than one thread.
"""
from __future__ import annotations

import json
import os

import gguf
import numpy as np
import pytest

from babel_edge import precision as P
import torch

from babel_edge.exporters.gguf import export_gguf, summary_path
from babel_edge.exporters.gguf import layout as gguf_layout
from babel_edge.exporters.gguf import llama as gguf_llama
from babel_edge.exporters.gguf import padded as gguf_padded
from babel_edge.exporters.gguf import tensors as gguf_tensors
from babel_edge.models import load_model as load_for_export
from babel_edge.exporters.parity import ParityError
from babel_edge.models.adapters import ADAPTERS, ffn_layers
from babel_edge.models.tiny import TINY_FAMILIES
from babel_edge.prune.model_dir import save_pruned, set_width_config, shrink_layer

WIDTHS = [256, 96, 168, 64]        # 168: not a multiple of 32, so Q8_0 must fall back for it
DENSE_ARCH = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "gemma2": "gemma2",
              "gemma3_text": "gemma3"}
PER_LAYER_ARCH = {"llama": "deci", "mistral": "deci", "qwen2": "deci", "gemma2": "gemma2",
                  "gemma3_text": "gemma4"}
T = 1                               # threads


def slice_ffn(model, widths=WIDTHS, seed=0):
    """Per-layer widths in memory: a seeded choice of each layer's neurons."""
    g = torch.Generator().manual_seed(seed)
    for v, w in zip(ffn_layers(model), widths):
        shrink_layer(model, v.index, torch.sort(torch.randperm(v.width, generator=g)[:w]).values)
    set_width_config(model)
    return model


def tiny(tiny_dirs, family, per_layer):
    lm = load_for_export(tiny_dirs[family])
    if per_layer:
        slice_ffn(lm.model)
    return lm


def fields(path):
    r = gguf.GGUFReader(str(path))
    return {k: f.contents() for k, f in r.fields.items()}, {t.name: t for t in r.tensors}


# ----------------------------------------------------------------------------- every family

@pytest.mark.parametrize("per_layer", [False, True], ids=["dense", "per-layer"])
@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_f32_export_matches_torch(tiny_dirs, tmp_path, family, per_layer):
    lm = tiny(tiny_dirs, family, per_layer)
    out = tmp_path / "m.gguf"
    s = export_gguf(lm, out, "f32", threads=T, verbose=False)
    assert out.exists() and summary_path(out).exists()
    assert json.loads(summary_path(out).read_text())["parity"]["passed"]
    p = s["parity"]
    assert p["passed"] and p["max_abs_diff"] < 0.05 and p["argmax_agreement"] >= 0.98
    assert s["tokenizer"]["check"]["mismatched"] == []
    assert s["architecture"] == (PER_LAYER_ARCH if per_layer else DENSE_ARCH)[family]
    meta, tensors = fields(out)
    arch = meta["general.architecture"]
    widths = WIDTHS if per_layer else [256] * 4
    assert s["ffn_widths"] == widths
    stored = [int(tensors[f"blk.{i}.ffn_down.weight"].shape[0]) for i in range(4)]
    if per_layer and family == "gemma2":          # no per-layer architecture: padded, and said so
        assert stored == [256] * 4 and s["padded"]["zero_neurons"] == 1024 - sum(WIDTHS)
        assert any("PADDED" in n for n in s["notes"])
    else:
        assert stored == widths and s["padded"] is None
        ff = meta[f"{arch}.feed_forward_length"]
        assert (list(ff) if per_layer else [ff] * 4) == widths
    assert list(meta["babel_edge.ffn_widths"]) == widths
    assert s["sample"]["greedy"]


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_q8_0_per_layer(tiny_dirs, tmp_path, family):
    lm = tiny(tiny_dirs, family, True)
    out = tmp_path / "m.gguf"
    s = export_gguf(lm, out, "q8_0", threads=T, verbose=False)
    assert s["parity"]["passed"]
    assert s["tensor_types"].get("Q8_0", 0) > 0
    by = s["tensor_types_by_tensor"]
    if family != "gemma2":          # layer 2 has 168 neurons: rows not a multiple of 32 -> F16
        assert by["blk.*.ffn_down.weight"] == {"Q8_0": 3, "F16": 1}
    if s["architecture"] == "gemma4":   # the linearised V keeps its tiny scale in BF16
        assert by["blk.*.attn_v.weight"] == {"BF16": 4}
    # an independent llama-cpp-python instance loads and generates
    from llama_cpp import Llama

    llm = Llama(model_path=str(out), n_ctx=64, n_threads=T, n_threads_batch=T, verbose=False)
    text = llm.create_completion("Die Hauptstadt", max_tokens=6, temperature=0.0)["choices"][0]["text"]
    llm.close()
    assert isinstance(text, str) and text


@pytest.mark.parametrize("quant", [q for q in P.names("gguf") if P.get("gguf", q).llama_ftype])
def test_every_quantized_precision_goes_through_llama_cpp(tiny_dirs, tmp_path, quant):
    """Each quantized row of the precision table names a real llama.cpp file type: llama.cpp's
    quantizer writes it from our F32 file, the weights are no longer float, the file is smaller
    and llama.cpp runs it. (Its parity gate is set on the real model: bench_export_gguf.py;
    a tiny random model's near-uniform logits flip top-1 under any 5-bit noise.)"""
    lm = tiny(tiny_dirs, "llama", True)
    src = tmp_path / "f32.gguf"
    export_gguf(lm, src, "f32", threads=T, verbose=False)
    dst = tmp_path / f"{quant}.gguf"
    gguf_llama.quantize(src, dst, P.get("gguf", quant).llama_ftype, threads=T)
    types = gguf_llama.tensor_types(dst)
    assert set(types["count"]) - {"F32", "F16", "BF16"}, types["count"]
    assert dst.stat().st_size < 0.6 * src.stat().st_size
    ids = lm.tokenizer("The capital of France is Paris.")["input_ids"]
    r = gguf_llama.LlamaRunner(dst, 64, T)
    logits = r.logits(ids)
    r.close()
    assert logits.shape[0] == len(ids) and np.isfinite(logits).all()


def test_every_supported_family_is_covered():
    assert set(TINY_FAMILIES) == set(ADAPTERS)
    assert set(gguf_layout.PER_LAYER_TARGET) == set(ADAPTERS)
    for fam, target in gguf_layout.PER_LAYER_TARGET.items():
        if target is None:                         # padded: the summary must say why
            assert fam in gguf_padded.NO_PER_LAYER_REASON
        else:
            assert gguf_layout.TARGETS[target].per_layer_ffn


# ----------------------------------------------------------------------------- specifics

def test_gemma4_matches_padded_gemma3(tiny_dirs, tmp_path):
    """The gemma4 rewrites (q scale, linearised V norm) against the plain zero-padded gemma3
    file: both run in llama.cpp and must agree (guards the llama.cpp internals they rely on)."""
    lm = tiny(tiny_dirs, "gemma3_text", True)
    a = export_gguf(lm, tmp_path / "g4.gguf", "f32", threads=T, verbose=False)
    b = export_gguf(lm, tmp_path / "g3.gguf", "f32", align=256, threads=T, verbose=False)
    assert (a["architecture"], b["architecture"]) == ("gemma4", "gemma3")
    assert b["padded"]["stored_widths"] == [256] * 4
    ids = lm.tokenizer("Москва — столица России. The capital of France is Paris.")["input_ids"]
    ra = gguf_llama.LlamaRunner(tmp_path / "g4.gguf", 128, T)
    rb = gguf_llama.LlamaRunner(tmp_path / "g3.gguf", 128, T)
    la, lb = ra.logits(ids), rb.logits(ids)
    ra.close(), rb.close()
    assert np.abs(la - lb).max() < 0.02
    assert (la.argmax(1) == lb.argmax(1)).all()


@pytest.mark.parametrize("family,rope", [
    ("llama", {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 32}),
    ("gemma3_text", {"rope_type": "linear", "factor": 8.0}),
], ids=["llama3-deci", "linear-gemma4"])
def test_rope_scaling(tiny_dirs, tmp_path, family, rope):
    """Rope scaling reaches llama.cpp as per-frequency rope_freqs (parity fails without them)."""
    from transformers import AutoModelForCausalLM

    lm = load_for_export(tiny_dirs[family])
    cfg = lm.model.config
    cfg.rope_scaling = rope
    torch.manual_seed(0)
    lm.model = slice_ffn(AutoModelForCausalLM.from_config(cfg).eval())
    s = export_gguf(lm, tmp_path / "r.gguf", "f32", threads=T, verbose=False)
    assert s["parity"]["passed"] and s["architecture"] in ("deci", "gemma4")
    _, tensors = fields(tmp_path / "r.gguf")
    assert "rope_freqs.weight" in tensors


def test_k_quant_fallbacks_reported_and_align(tiny_dirs, tmp_path):
    from babel_edge.exporters.gguf import _fallbacks

    lm = tiny(tiny_dirs, "llama", True)
    export_gguf(lm, tmp_path / "f.gguf", "f32", threads=T, verbose=False)
    gguf_llama.quantize(tmp_path / "f.gguf", tmp_path / "q.gguf", "LLAMA_FTYPE_MOSTLY_Q4_K_M", threads=T)
    fb = _fallbacks(gguf_llama.tensor_types(tmp_path / "q.gguf"), "q4_k_m")
    assert fb["blk.*.ffn_down.weight"]["row_lengths"] == sorted(set(WIDTHS))
    # --align 256: ffn_down rows become 256 long and K-quants take them
    export_gguf(lm, tmp_path / "a.gguf", "f32", align=256, threads=T, verbose=False)
    gguf_llama.quantize(tmp_path / "a.gguf", tmp_path / "qa.gguf", "LLAMA_FTYPE_MOSTLY_Q4_K_M", threads=T)
    types = gguf_llama.tensor_types(tmp_path / "qa.gguf")
    assert set(types["by_tensor"]["blk.*.ffn_down.weight"]) <= {"Q4_K", "Q6_K"}


def test_pruned_directory_metadata_and_tokenizer(tiny_dirs, tmp_path, plan_for):
    """A directory in the pruner's format (per-layer widths + pruning_plan.json) exports with
    the plan in the general metadata and the tokenizer complete."""
    src = tiny_dirs["qwen2"]
    lm = load_for_export(src)
    slice_ffn(lm.model)
    lm.tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    plan = plan_for(lm.model, ["en", "de", "fr"])
    pruned = save_pruned(lm.model, tmp_path / "pruned", plan, source_dir=None, tokenizer=lm.tokenizer)
    out = tmp_path / "p.gguf"
    s = export_gguf(pruned, out, "f32", threads=T, verbose=False)
    meta, _ = fields(out)
    assert s["architecture"] == "deci" and s["pruning"]["target_langs"] == ["en", "de", "fr"]
    assert list(meta["babel_edge.pruning.target_langs"]) == ["en", "de", "fr"]
    assert "en, de, fr" in meta["general.name"] and "pruned" in meta["general.description"]
    tok = lm.tokenizer
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "gpt-2"
    assert len(meta["tokenizer.ggml.tokens"]) == len(tok) and len(meta["tokenizer.ggml.merges"]) > 100
    assert meta["tokenizer.ggml.bos_token_id"] == tok.bos_token_id
    assert meta["tokenizer.ggml.eos_token_id"] == tok.eos_token_id
    assert meta["tokenizer.ggml.add_bos_token"] is True
    assert meta["tokenizer.chat_template"] == lm.tokenizer.chat_template
    types = meta["tokenizer.ggml.token_type"]
    assert types[tok.bos_token_id] == 3 and types[100] == 1


def test_parity_miss_raises_and_leaves_nothing(tiny_dirs, tmp_path, monkeypatch):
    lm = tiny(tiny_dirs, "llama", True)
    out = tmp_path / "m.gguf"
    out.write_bytes(b"old")              # an earlier export stays untouched (--force)
    monkeypatch.setattr(gguf_tensors, "interleave_rope_rows", lambda w, n: w)   # wrong rotary layout
    with pytest.raises(ParityError, match="parity"):
        export_gguf(lm, out, "f32", force=True, threads=T, verbose=False)
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf"]


def _drop_one_unit(real):
    """gguf_tensors with layer 1's FFN one unit (32 neurons) narrower: a wrong width."""
    def broken(model, layout, calib_ids=None):
        out, info = real(model, layout, calib_ids)
        for kind in ("ffn_gate", "ffn_up"):
            out[f"blk.1.{kind}.weight"] = out[f"blk.1.{kind}.weight"][:-32]
        out["blk.1.ffn_down.weight"] = out["blk.1.ffn_down.weight"][:, :-32]
        layout.stored[1] -= 32
        return out, info
    return broken


@pytest.mark.parametrize("family, quant", [("llama", "f32"), ("llama", "q8_0"),
                                           ("gemma3_text", "f32"), ("gemma3_text", "q8_0")])
def test_a_layer_one_unit_short_fails_every_gate(tiny_dirs, tmp_path, monkeypatch, family, quant):
    import babel_edge.exporters.gguf as gguf_export

    lm = tiny(tiny_dirs, family, True)
    monkeypatch.setattr(gguf_export, "gguf_tensors", _drop_one_unit(gguf_export.gguf_tensors))
    with pytest.raises(ParityError, match="parity"):
        export_gguf(lm, tmp_path / "m.gguf", quant, threads=T, verbose=False)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("quant", ["f32", "q8_0"])
def test_a_wrong_v_scale_fails_the_gate(tiny_dirs, tmp_path, monkeypatch, quant):
    """gemma4's V scale too large (V no longer far below the norm's eps): its weightless V norm
    normalises every head instead of being a fixed linear map."""
    from babel_edge.exporters.gguf import gemma4

    real = gemma4.linearise_v_norm

    def off_by_two(out, cfg, n, hd, observed):
        info = real(out, cfg, n, hd, observed)
        for il, log2 in enumerate(info["log2_v_scale"]):
            out[f"blk.{il}.attn_v.weight"] = out[f"blk.{il}.attn_v.weight"] * np.float32(2.0 ** -log2)
        return info

    lm = tiny(tiny_dirs, "gemma3_text", True)
    monkeypatch.setattr(gemma4, "linearise_v_norm", off_by_two)
    with pytest.raises(ParityError, match="parity"):
        export_gguf(lm, tmp_path / "m.gguf", quant, threads=T, verbose=False)


# ----------------------------------------------------------------------------- CLI

def run_cli(argv, capsys):
    """`babel-edge <argv>` through the real entry point: (exit code, captured output)."""
    from babel_edge.cli import main

    rc = main(argv)
    return rc, capsys.readouterr()


def test_cli_bad_input(tiny_dirs, tmp_path, capsys):
    out = str(tmp_path / "x.gguf")
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "weird").mkdir()
    (tmp_path / "weird" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    exists = tmp_path / "exists.gguf"
    exists.write_bytes(b"x")
    cases = [
        ["--model", str(tmp_path / "missing"), "--format", "gguf", "--out", out],
        ["--model", str(tiny_dirs["llama"]), "--format", "gguf", "--quant", "q3_xyz", "--out", out],
        ["--model", str(empty), "--format", "gguf", "--out", out],
        ["--model", str(tmp_path / "weird"), "--format", "gguf", "--out", out],
        ["--model", str(tiny_dirs["llama"]), "--format", "gguf", "--out", str(exists)],
        ["--model", str(tiny_dirs["llama"]), "--format", "gguf", "--out", str(tmp_path / "x.bin")],
        ["--model", str(tiny_dirs["llama"]), "--format", "onnx", "--quant", "q8_0", "--out", out],
    ]
    for argv in cases:
        rc, cap = run_cli(["export", *argv], capsys)
        lines = cap.err.strip().splitlines()
        assert rc == 2, (argv, cap.err)
        assert len(lines) == 1 and lines[0].startswith("babel-edge export: error: "), cap.err
    assert exists.read_bytes() == b"x" and not os.path.exists(out)


def test_cli_export_gguf(tiny_dirs, tmp_path, capsys):
    out = tmp_path / "cli.gguf"
    rc, cap = run_cli(["export", "--model", str(tiny_dirs["gemma3_text"]), "--format", "gguf",
                       "--quant", "fp32", "--out", str(out), "--threads", "1"], capsys)
    assert rc == 0, cap.err
    assert "GGUF f32 export" in cap.out and "pass" in cap.out and out.exists()
    rc, cap = run_cli(["export", "--model", str(tiny_dirs["gemma3_text"]), "--format", "gguf",
                       "--quant", "q8_0", "--out", str(out), "--force", "--threads", "1"], capsys)
    assert rc == 0 and json.loads(summary_path(out).read_text())["precision"] == "q8_0"


def test_cli_help_lists_everything(capsys):
    with pytest.raises(SystemExit):
        run_cli(["export", "--help"], capsys)
    text = capsys.readouterr().out
    for word in ("--model", "--format", "--quant", "--out", "--force", "q4_k_m", "deci", "gemma4",
                 "zero-padded", "parity"):
        assert word in text


# ----------------------------------------------------------------------------- the real model

@pytest.mark.integration
def test_embedded_pruned_half_exports_as_gemma4_q8_0(embedded, tmp_path):
    """Gemma 3 270M, FFN pruned in memory to ~50% with per-layer widths (neurons with the
    largest activation mass kept) -> gemma4 GGUF q8_0 -> loads, passes parity, generates."""
    import dataclasses

    from babel_edge.corpus import load_corpus
    from babel_edge.profile import profile_model
    from babel_edge.prune import PruneOptions, prune_loaded

    corpus = load_corpus()
    texts_for = lambda l: corpus.texts(l, "profile")  # noqa: E731
    g = torch.Generator().manual_seed(0)
    n = len(ffn_layers(embedded.model))
    widths = [int(w) * 32 for w in torch.randint(24, 41, (n,), generator=g)]  # 768..1280
    widths[-1] += 18 * 1024 - sum(widths)               # the rate-0.5 budget, exactly
    prof = profile_model(embedded, ["en", "de", "fr"], texts_for, tokens_per_lang=512, min_tokens=256)
    model, plan = prune_loaded(embedded, ["en", "de", "fr"], 0.5, PruneOptions(calib_tokens=2048),
                               profile=prof, texts_for=texts_for,    # mass: massive neurons stay
                               widths=widths)
    lm = dataclasses.replace(embedded, model=model)
    out = tmp_path / "pruned-q8_0.gguf"
    s = export_gguf(lm, out, "q8_0", verbose=False)
    assert s["architecture"] == "gemma4" and s["padded"] is None
    assert s["ffn_widths"] == widths and s["parity"]["passed"]
    assert s["tokenizer"]["check"]["mismatched"] == []
    assert s["parity"]["long_sequence_tokens"] > 512              # past Gemma 3's sliding window
    meta, tensors = fields(out)
    assert meta["babel_edge.source_architecture"] == "gemma3"
    assert "V" in meta["babel_edge.rewrite"] and meta["babel_edge.gemma4.v_norm_gain_error_bound"] > 0
    assert list(meta["gemma4.feed_forward_length"]) == widths
    assert [int(tensors[f"blk.{i}.ffn_gate.weight"].shape[1]) for i in range(n)] == widths
    assert s["sample"]["greedy"].strip()

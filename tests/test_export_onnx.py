"""ONNX export: every family, dense and with per-layer FFN widths, run by real onnxruntime.

Each export already runs the parity check against PyTorch (through onnxruntime and through
onnxruntime-genai: tests/test_genai.py); these tests also drive the graph from a plain
onnxruntime session, check KV-cache decoding — in a buffer written in place, and as past +
new positions — against a full recompute past the sliding window, and check that optimum's
ORTModelForCausalLM generates the same greedy tokens as PyTorch.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from babel_edge import precision as precision_table
from babel_edge.errors import UserError
from babel_edge.exporters.onnx import (SUMMARY_FILE, OnnxCausalLM, export_onnx, format_summary,
                                       load_ort_model)
from babel_edge.exporters.parity import ParityError
from babel_edge.models import ffn_layers, load_model
from babel_edge.models.tiny import TINY_FAMILIES

# Tiny models: 4 layers of width 256; the pruned variant keeps a different width per
# layer, including ones that are no multiple of the 4-bit block (32).
PRUNED_WIDTHS = [256, 160, 72, 200]
# optimum-onnx 0.1.0 builds Gemma 2's empty first-step KV cache with the wrong shape
# (num_attention_heads); load_ort_model corrects it from the graph.
OPTIMUM_KV_SHAPE_GAP = {"gemma2"}
# Longer than the tiny Gemma models' sliding window (32), so decoding crosses it.
LONG_TEXT = ("The capital of France is Paris. Die Hauptstadt von Deutschland ist Berlin. "
             "Москва — столица России. 北京是中国的首都。")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def slice_ffn(model, widths, keep_fn=None, seed=0):
    """Keep `widths[i]` neurons of layer i, in memory, the way the pruner does
    (prune.model_dir.shrink_layer; config gets `ffn_widths`).

    keep_fn(view, width) -> sorted neuron ids; default: a seeded random subset."""
    from babel_edge.prune.model_dir import set_width_config, shrink_layer

    g = torch.Generator().manual_seed(seed)
    for v, w in zip(ffn_layers(model), widths):
        keep = keep_fn(v, w) if keep_fn else torch.randperm(v.width, generator=g)[:w].sort().values
        shrink_layer(model, v.index, keep)
    set_width_config(model)
    return model


def _load(tiny_dirs, fam, pruned):
    lm = load_model(str(tiny_dirs[fam]))
    # eager attention is the model's own math; transformers' default sdpa path skips Gemma 2's
    # attention logit softcapping, which the graph applies (as llama.cpp does)
    lm.model.set_attn_implementation("eager")
    if pruned:
        slice_ffn(lm.model, PRUNED_WIDTHS)
    return lm


def _session(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])


def _feed(s, ids, past=None, start=0):
    """Inputs of a bare session: `ids` after `start` cached positions (empty cache: None)."""
    feed = {"input_ids": np.array([ids], np.int64),
            "attention_mask": np.ones((1, start + len(ids)), np.int64),
            "position_ids": np.arange(start, start + len(ids), dtype=np.int64)[None]}
    for i in s.get_inputs():
        if i.name.startswith("past_key_values."):
            feed[i.name] = past[i.name] if past else np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32)
    return feed


def _plain_session_logits(path, ids):
    """Full-sequence logits from a bare onnxruntime session (no babel-edge runner)."""
    s = _session(path)
    names = [o.name for o in s.get_outputs()]
    return s.run(["logits"], _feed(s, ids))[0][0], names


def _plain_session_present(path, ids):
    s = _session(path)
    return s.run(["present.3.value"], _feed(s, ids))[0]


def _concat_cache_logits(path, ids, prefill):
    """Logits of a bare session fed each step's present as the next past (past + new)."""
    s = _session(path)
    names = [o.name for o in s.get_outputs()]
    out = dict(zip(names, s.run(None, _feed(s, ids[:prefill]))))
    parts = [out["logits"][0]]
    for i, tok in enumerate(ids[prefill:], prefill):
        past = {n.replace("present.", "past_key_values."): v for n, v in out.items() if n != "logits"}
        out = dict(zip(names, s.run(None, _feed(s, [tok], past, i))))
        assert out["present.0.key"].shape[2] == i + 1
        parts.append(out["logits"][0])
    return np.concatenate(parts)


@pytest.mark.parametrize("pruned", [False, True], ids=["dense", "pruned"])
@pytest.mark.parametrize("fam", TINY_FAMILIES)
def test_fp32_export_runs_in_onnxruntime_and_optimum(tiny_dirs, tmp_path, fam, pruned):
    from optimum.onnxruntime import ORTModelForCausalLM

    lm = _load(tiny_dirs, fam, pruned)
    out = tmp_path / "onnx"
    s = export_onnx(lm, out, "fp32", verbose=False)

    # the artefact: graph + external data, config/tokenizer for optimum, the summary
    assert (out / "model.onnx").exists() and (out / "model.onnx_data").exists()
    assert s["external_data"] == ["model.onnx_data"]
    assert s["ffn_widths"] == (PRUNED_WIDTHS if pruned else [256] * 4)
    assert s["ffn_kept"] == (None if pruned else 1.0)   # sliced in memory: no record of before
    assert s["parity"]["passed"] and s["parity"]["paragraphs"] > 0
    assert json.loads((out / SUMMARY_FILE).read_text())["parity"] == s["parity"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"]          # no temp dirs left
    assert ("FFN widths" if pruned else "FFN width") in format_summary(s)

    ids = list(lm.tokenizer(LONG_TEXT)["input_ids"])
    assert len(ids) > 40
    with torch.no_grad():
        ref = lm.model(torch.tensor([ids])).logits[0].numpy()

    # a plain onnxruntime session computes what PyTorch computes, with optimum's I/O names
    full, names = _plain_session_logits(out, ids)
    assert names[0] == "logits" and "present.0.key" in names and "present.3.value" in names
    assert np.abs(full - ref).max() < 1e-4

    # the graph is onnxruntime's fused decoder: per layer one GroupQueryAttention (rotary,
    # mask, GQA, KV append), two fused residual norms, the MatMuls; no cache Concat
    assert s["ops"]["GroupQueryAttention"] == 4 and "Concat" not in s["ops"]
    assert s["ops"]["SkipSimplifiedLayerNormalization"] == 2 * 4
    assert sum(s["ops"].values()) < 30 * 4
    assert s["kv_cache"]["in_place"]

    # KV-cache decoding (prefill 8, then one token at a time past the window) = full recompute,
    # in one buffer per layer written in place (grown from 16 positions on the way) ...
    runner = OnnxCausalLM(out)
    assert runner.shared
    cache = runner.new_cache(1, capacity=16)
    parts = [runner.forward(np.array([ids[:8]]), cache)[0][0]]
    first = cache.buffers["past_key_values.0.key"]
    for i, tok in enumerate(ids[8:], 8):
        logits, same = runner.forward(np.array([[tok]]), cache)
        assert same is cache and cache.length == i + 1
        if i < 16:      # no copy of the cache until it outgrows its buffer
            assert cache.buffers["past_key_values.0.key"] is first
        parts.append(logits[0])
    assert cache.capacity == 64 and np.abs(np.concatenate(parts) - full).max() < 1e-4
    # ... the buffer holds what a plain session returns as present, and nothing past it
    present = _plain_session_present(out, ids)
    assert np.abs(cache.buffers["past_key_values.3.value"][:, :, :len(ids)] - present).max() < 1e-5
    assert not cache.buffers["past_key_values.3.value"][:, :, len(ids):].any()
    # ... and as past + new positions (how optimum and a plain session feed it)
    stepped = _concat_cache_logits(out, ids, prefill=8)
    assert np.abs(stepped - full).max() < 1e-4
    assert np.abs(runner.logits(ids, decode_steps=len(ids) - 8) - full).max() < 1e-4

    # greedy generation: PyTorch vs optimum's ORTModelForCausalLM vs our runner
    prompt = list(lm.tokenizer("Die Hauptstadt von")["input_ids"])
    n = 36   # prompt + 36 > 32: crosses the sliding window
    with torch.no_grad():
        want = lm.model.generate(torch.tensor([prompt]), max_new_tokens=n, min_new_tokens=n,
                                 do_sample=False)[0, len(prompt):].tolist()
    if fam in OPTIMUM_KV_SHAPE_GAP:
        stock = ORTModelForCausalLM.from_pretrained(out)
        with pytest.raises(Exception, match="invalid dimensions"):   # tells us when optimum fixes it
            stock.generate(torch.tensor([prompt]), max_new_tokens=2)
        ort_model = load_ort_model(out)
    else:
        ort_model = ORTModelForCausalLM.from_pretrained(out)
    got = ort_model.generate(torch.tensor([prompt]), max_new_tokens=n, min_new_tokens=n,
                             do_sample=False)[0, len(prompt):].tolist()
    assert got == want
    assert runner.generate(prompt, n) == want


@pytest.fixture(scope="module")
def trained_pruned_llama(tiny_dirs):
    """A pruned tiny Llama trained for a few steps on corpus text.

    A random tiny model predicts almost uniformly (perplexity ≈ vocab size), so any
    weight noise flips its near-tied argmax; quantization is judged on a model that has
    learned something, like the real ones."""
    from babel_edge.corpus import load_corpus

    lm = _load(tiny_dirs, "llama", pruned=True)
    corpus = load_corpus()
    text = " ".join(" ".join(list(corpus.texts(lang, "profile"))[:30])
                    for lang in ("en", "de", "fr", "ru", "zh"))
    data = torch.tensor(lm.tokenizer(text)["input_ids"])
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(lm.model.parameters(), lr=2e-2)
    lm.model.train()
    for _ in range(30):
        starts = torch.randint(0, len(data) - 65, (8,), generator=g)
        batch = torch.stack([data[i:i + 64] for i in starts])
        loss = lm.model(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    lm.model.eval()
    return lm


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_quantized_export_passes_its_thresholds(trained_pruned_llama, tmp_path, precision):
    lm = trained_pruned_llama
    s = export_onnx(lm, tmp_path / precision, precision, verbose=False)
    p, q = s["parity"], s["quantization"]
    assert p["passed"] and p["max_abs_diff"] > 0          # quantized: close, not equal
    # the fp32 graph it was made from met the fp32 gate, and is not left in the export
    assert p["structure_fp32"]["passed"] and p["structure_fp32"]["max_abs_diff"] < 1e-2
    assert not [f.name for f in (tmp_path / precision).iterdir() if f.name.startswith(".")]
    assert p["argmax_agreement"] >= precision_table.gate(precision).argmax_agreement
    # every weight MatMul became MatMulNBits (the ones left multiply activations: attention)
    assert s["ops"]["MatMulNBits"] == 4 * 7 + 1
    assert (q["layers_4bit"] > 0) == (precision == "int4") and q["layers_8bit"] > 0
    assert q["embedding"]["embedding_bits"] == 8 and q["embedding"]["lm_head_bits"] == 8
    assert s["files"]["model.onnx_data"] < s["parameters"] * 4 * 0.4   # well under fp32
    # the quantized graph generates through its KV cache
    runner = OnnxCausalLM(tmp_path / precision)
    assert len(runner.generate(lm.tokenizer("The capital")["input_ids"], 5)) == 5


def test_tied_embedding_is_quantized_once(tiny_dirs, tmp_path):
    """Gemma ties the LM head to the embedding: one 8-bit copy serves both (Gather + MatMulNBits)."""
    from babel_edge.exporters.onnx import build as B
    from babel_edge.exporters.onnx import graph as G

    lm = _load(tiny_dirs, "gemma3_text", pruned=True)
    proto, q = G.quantize_weights(B.build_decoder(lm.model), 8)
    assert q["embedding"]["tied_head"]
    q8 = [t.name for t in proto.graph.initializer if t.name.endswith(".q8")]
    assert q8 == ["model.embed_tokens.weight.q8"]
    head = [n for n in proto.graph.node if n.name.startswith("/lm_head/")]
    assert head[0].op_type == "MatMulNBits" and head[0].input[1] == q8[0]
    assert not any(t.name == "model.embed_tokens.weight" for t in proto.graph.initializer)
    # and it still computes the model: close to PyTorch on a short sequence
    G.save(proto, tmp_path / "q" / "model.onnx")
    ids = list(lm.tokenizer(LONG_TEXT)["input_ids"])
    with torch.no_grad():
        ref = lm.model(torch.tensor([ids])).logits[0].numpy()
    got = OnnxCausalLM(tmp_path / "q").logits(ids)
    assert np.abs(got - ref).mean() < 0.05 * ref.std()


def test_fp16_export_keeps_kv_cache_in_fp16(tiny_dirs, tmp_path):
    lm = _load(tiny_dirs, "gemma3_text", pruned=True)
    s = export_onnx(lm, tmp_path / "fp16", "fp16", verbose=False)
    assert s["parity"]["passed"]
    runner = OnnxCausalLM(tmp_path / "fp16")
    assert runner.kv_dtype == np.float16
    from optimum.onnxruntime import ORTModelForCausalLM

    gen = ORTModelForCausalLM.from_pretrained(tmp_path / "fp16").generate(
        torch.tensor([[1, 5, 6, 7]]), max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert gen.shape == (1, 9)
    assert s["files"]["model.onnx_data"] < s["parameters"] * 2 * 1.1


def test_parity_failure_leaves_nothing(tiny_dirs, tmp_path, monkeypatch):
    lm = _load(tiny_dirs, "qwen2", pruned=True)
    # an unreachable bar: argmax agreement above 100%
    row = precision_table.PRECISIONS[("onnx", "fp32")]
    monkeypatch.setitem(precision_table.PRECISIONS, ("onnx", "fp32"),
                        dataclasses.replace(row, gate=precision_table.Gate(None, 1.01, 1.0)))
    with pytest.raises(ParityError, match="argmax agreement"):
        export_onnx(lm, tmp_path / "out", "fp32", verbose=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_flipped_rope_fails_the_gate(trained_pruned_llama, tmp_path, monkeypatch, precision):
    """A deliberately broken graph (rotary embedding turning the wrong way) must not pass the
    parity gate, and leaves nothing behind. int8's own gate reads argmax and perplexity only,
    which this few-step-trained tiny model (it barely uses positions) passes with the flip:
    the fp32 graph the int8 one is made from is held to the fp32 gate first, and fails."""
    from babel_edge.exporters.onnx import build

    real = build._rope_inv_freq

    def flipped(rotary):
        inv, scale = real(rotary)
        return -inv, scale

    monkeypatch.setattr(build, "_rope_inv_freq", flipped)
    with pytest.raises(ParityError, match="parity|argmax|perplexity|logit") as e:
        export_onnx(trained_pruned_llama, tmp_path / "out", precision, verbose=False)
    assert precision == "fp32" or "graph structure" in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_bad_input_is_a_user_error(tiny_dirs, tmp_path):
    lm = _load(tiny_dirs, "llama", pruned=False)
    with pytest.raises(UserError, match="unknown ONNX precision"):
        export_onnx(lm, tmp_path / "x", "int3", verbose=False)
    with pytest.raises(UserError, match="not found"):
        export_onnx(str(tmp_path / "missing"), tmp_path / "x", verbose=False)
    with pytest.raises(UserError, match="opset 17 is too old"):
        export_onnx(lm, tmp_path / "x", opset=17, verbose=False)
    dynamic = _load(tiny_dirs, "llama", pruned=False)
    dynamic.model.model.rotary_emb.rope_type = "dynamic"      # inv_freq that follows the length
    with pytest.raises(UserError, match="rope scaling 'dynamic'"):
        export_onnx(dynamic, tmp_path / "x", verbose=False)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="already exists"):
        export_onnx(lm, tmp_path / "taken", verbose=False)
    with pytest.raises(UserError, match="not an ONNX export"):
        export_onnx(lm, tmp_path / "taken", force=True, verbose=False)
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"


def test_export_from_a_pruned_directory_and_force(tiny_dirs, tmp_path, plan_for):
    from babel_edge.prune.model_dir import save_pruned

    lm = _load(tiny_dirs, "mistral", pruned=True)
    src = save_pruned(lm.model, tmp_path / "pruned", plan=plan_for(lm.model, ["en", "de"]),
                      source_dir=lm.path)
    out = tmp_path / "onnx"
    s = export_onnx(str(src), out, verbose=False)           # through load_model, like the CLI
    assert s["ffn_widths"] == PRUNED_WIDTHS and s["parity"]["passed"]
    assert s["ffn_widths_before"] == [256] * len(PRUNED_WIDTHS)      # from the plan
    assert json.loads((out / "config.json").read_text())["ffn_widths"] == PRUNED_WIDTHS
    assert "pruning_plan.json" in s["carried_files"]
    (out / "stale.txt").write_text("old")
    export_onnx(str(src), out, force=True, verbose=False)
    assert not (out / "stale.txt").exists() and (out / "model.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx", "pruned"]


def half_widths(n_layers, dense, lo=0.4, hi=0.6, multiple=32):
    """Per-layer widths averaging half the dense width, growing with depth."""
    return [int(round(dense * (lo + (hi - lo) * i / max(n_layers - 1, 1)) / multiple)) * multiple
            for i in range(n_layers)]


@pytest.mark.integration
def test_embedded_pruned_half_exports_fp32(tmp_path):
    from babel_edge.corpus import load_corpus

    import dataclasses

    from babel_edge.prune import PruneOptions, prune_loaded

    lm = load_model(None)
    widths = half_widths(len(ffn_layers(lm.model)), lm.model.config.intermediate_size)
    # the real pruner at fixed per-layer widths (mass x down-norm keeps Gemma's
    # massive-activation neurons; least-squares compensation on profile-split text)
    from babel_edge.profile import profile_model

    corpus = load_corpus()
    texts_for = lambda l: corpus.texts(l, "profile")  # noqa: E731
    prof = profile_model(lm, ["en", "de", "fr"], texts_for, tokens_per_lang=512, min_tokens=256)
    model, _ = prune_loaded(lm, ["en", "de", "fr"], 0.5, PruneOptions(calib_tokens=2048),
                            profile=prof, texts_for=texts_for, widths=widths, copy=False)
    lm = dataclasses.replace(lm, model=model)

    s = export_onnx(lm, tmp_path / "onnx", "fp32", verbose=False)
    assert s["ffn_widths"] == widths and s["parity"]["passed"]
    assert 0.45 < sum(widths) / (2048 * len(widths)) < 0.55
    # stored unpadded and the tied head once: the file holds the parameters that are left
    assert s["model_bytes"] < s["parameters"] * 4 * 1.01
    runner = OnnxCausalLM(tmp_path / "onnx")
    ids = list(lm.tokenizer("The capital of France is")["input_ids"])
    with torch.no_grad():
        want = lm.model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False)[0, len(ids):]
    eos = lm.model.generation_config.eos_token_id
    assert runner.generate(ids, 8, eos_token_id=eos) == want.tolist()


def test_runner_decodes_exports_that_concatenate_their_cache(tiny_dirs, tmp_path):
    """Exports made before the graph was written from the weights (optimum's tracer: each
    step's present is past + new positions) still decode, their presents bound as the next
    step's past."""
    import warnings

    from optimum.exporters.onnx import onnx_export_from_model

    lm = _load(tiny_dirs, "llama", pruned=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_export_from_model(lm.model, tmp_path / "traced", task="text-generation-with-past",
                               do_validation=False)
    runner = OnnxCausalLM(tmp_path / "traced")
    assert not runner.shared
    ids = list(lm.tokenizer(LONG_TEXT)["input_ids"])
    with torch.no_grad():
        ref = lm.model(torch.tensor([ids])).logits[0].numpy()
    assert np.abs(runner.logits(ids, decode_steps=len(ids) - 8) - ref).max() < 1e-4
    with torch.no_grad():
        want = lm.model.generate(torch.tensor([ids[:6]]), max_new_tokens=12, min_new_tokens=12,
                                 do_sample=False)[0, 6:].tolist()
    assert runner.generate(ids[:6], 12) == want

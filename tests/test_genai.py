"""onnxruntime-genai over babel-edge ONNX exports, with the real onnxruntime-genai package.

Every family, dense and with per-layer FFN widths, and pruned models with trimmed
vocabularies of both tokenizer kinds (byte-level BPE, SentencePiece BPE): the export loads as
an og.Model, og.Tokenizer reads its tokenizer files to the same ids as transformers, and
og.Generator's greedy text equals PyTorch's. The `onnxruntime-genai` engine generates and
scores like the PyTorch one; the benchmark measures both ONNX engines; our own onnxruntime
engine's decode profile names where its time goes. The embedded Gemma 3 270M runs through
genai in an integration test.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from babel_edge.errors import UserError
from babel_edge.exporters.onnx import GENAI_CONFIG, export_onnx
from babel_edge.models import ffn_layers, load_model
from babel_edge.models.tiny import TINY_FAMILIES, build_tiny_model

og = pytest.importorskip("onnxruntime_genai")

PRUNED_WIDTHS = [256, 160, 72, 200]
PROMPTS = ["Die Hauptstadt von", "The capital of France is", "Москва — столица"]
N_NEW = 40                       # with the prompt, past the tiny Gemmas' sliding window (32)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _load(path, widths=None):
    lm = load_model(str(path))
    # eager attention is the model's own math (transformers' sdpa skips Gemma 2's softcapping)
    lm.model.set_attn_implementation("eager")
    if widths:
        from babel_edge.prune.model_dir import set_width_config, shrink_layer

        g = torch.Generator().manual_seed(0)
        for v, w in zip(ffn_layers(lm.model), widths):
            shrink_layer(lm.model, v.index, torch.randperm(v.width, generator=g)[:w].sort().values)
        set_width_config(lm.model)
    return lm


def torch_greedy(lm, ids, n=N_NEW) -> list[int]:
    """transformers' own greedy continuation (stops at the model's EOS)."""
    with torch.no_grad():
        out = lm.model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False,
                                pad_token_id=lm.tokenizer.pad_token_id)
    return out[0, len(ids):].tolist()


def genai_greedy(model, ids, n=N_NEW) -> list[int]:
    """onnxruntime-genai's own loop, as an app writes it."""
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + n, do_sample=False)
    gen = og.Generator(model, params)
    gen.append_tokens(np.array(ids, np.int32))
    out = []
    while not gen.is_done():
        gen.generate_next_token()
        out.append(int(gen.get_next_tokens()[0]))
    return out


def check_in_genai(out, lm, prompts=PROMPTS) -> None:
    """The export in og: tokenizer ids, greedy tokens and text equal to PyTorch's."""
    model = og.Model(str(out))
    tok = og.Tokenizer(model)
    tok.update_options(add_special_tokens="true")
    for prompt in prompts:
        ids = [int(i) for i in tok.encode(prompt)]
        assert ids == list(lm.tokenizer(prompt)["input_ids"]), prompt
        want = torch_greedy(lm, ids)
        got = genai_greedy(model, ids)
        assert got == want, prompt
        text = lm.tokenizer.decode(want, skip_special_tokens=True)
        if "\ufffd" not in text:     # a random model's bytes are often no UTF-8 at all, and
            # genai's decoder gives up on those (one U+FFFD), where transformers replaces each
            assert tok.decode(np.array(got, np.int32)) == text
    # real text decodes alike: the prompts themselves round-trip through both
    for prompt in prompts:
        ids = list(lm.tokenizer(prompt)["input_ids"])
        assert tok.decode(np.array(ids, np.int32)) == lm.tokenizer.decode(ids, skip_special_tokens=True)


def check_config_names_the_graph(out) -> dict:
    """genai_config.json names exactly the graph's inputs and outputs and its cache shape."""
    import onnxruntime as ort

    cfg = json.loads((out / GENAI_CONFIG).read_text())
    dec = cfg["model"]["decoder"]
    s = ort.InferenceSession(str(out / dec["filename"]), providers=["CPUExecutionProvider"])
    ins = {i.name: i for i in s.get_inputs()}
    outs = {o.name for o in s.get_outputs()}
    n = dec["num_hidden_layers"]
    named_in = {dec["inputs"][k] for k in ("input_ids", "attention_mask", "position_ids")}
    named_in |= {dec["inputs"][f"past_{kv}_names"] % i for kv in ("key", "value") for i in range(n)}
    named_out = {dec["outputs"]["logits"]} | {dec["outputs"][f"present_{kv}_names"] % i
                                              for kv in ("key", "value") for i in range(n)}
    assert named_in == set(ins) and named_out == outs
    kv = ins[dec["inputs"]["past_key_names"] % 0]
    assert [kv.shape[1], kv.shape[3]] == [dec["num_key_value_heads"], dec["head_size"]]
    assert cfg["search"]["past_present_share_buffer"] is True
    assert cfg["search"]["max_length"] <= cfg["model"]["context_length"]
    return cfg


@pytest.mark.parametrize("pruned", [False, True], ids=["dense", "pruned"])
@pytest.mark.parametrize("fam", TINY_FAMILIES)
def test_each_family_generates_in_genai_like_pytorch(tiny_dirs, tmp_path, fam, pruned):
    lm = _load(tiny_dirs[fam], PRUNED_WIDTHS if pruned else None)
    out = tmp_path / "onnx"
    s = export_onnx(lm, out, "fp32", verbose=False)
    ga = s["genai"]
    assert ga["parity"]["passed"] and ga["parity"]["max_abs_diff"] < 1e-4
    assert ga["tokenizer_texts_checked"] >= 8 and ga["type"] == fam
    cfg = check_config_names_the_graph(out)
    assert cfg["model"]["vocab_size"] == lm.model.config.vocab_size
    assert cfg["model"]["bos_token_id"] == lm.tokenizer.bos_token_id
    assert lm.tokenizer.eos_token_id in np.atleast_1d(cfg["model"]["eos_token_id"])
    check_in_genai(out, lm)


@pytest.mark.parametrize("kind,fam", [("bpe", "qwen2"), ("spm", "gemma3_text")])
def test_pruned_trimmed_vocabulary_runs_in_genai(tmp_path, kind, fam, monkeypatch):
    """`babel-edge prune --trim-vocab` (FFN pruned, vocabulary trimmed and renumbered), exported
    as make demo does: genai's tokenizer reads the trimmed files to the same ids, its greedy
    text equals PyTorch's on the pruned model, and int8 passes its gate through genai."""
    from babel_edge.cli import main

    monkeypatch.setenv("BABEL_EDGE_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "tiny"
    build_tiny_model(fam, src, seed=0, tokenizer=kind)
    pruned = tmp_path / "pruned"
    assert main(["prune", "--model", str(src), "--langs", "en,de", "--rate", "0.5",
                 "--strategy", "magnitude", "--schedule", "uniform", "--no-compensate", "--trim-vocab",
                 "--out", str(pruned)]) == 0
    lm = _load(pruned)
    assert lm.model.config.vocab_size < len(load_model(str(src)).tokenizer)      # trimmed
    out = tmp_path / "onnx"
    s = export_onnx(str(pruned), out, "fp32", verbose=False)
    assert s["genai"]["parity"]["passed"]
    check_config_names_the_graph(out)
    check_in_genai(out, lm, PROMPTS + ["Grüße aus Köln — ça va? 😀"])
    # int8 (the demo's precision) passes its gate through genai too
    s8 = export_onnx(str(pruned), tmp_path / "int8", "int8", verbose=False)
    assert s8["genai"]["parity"]["passed"] and s8["genai"]["parity"]["max_abs_diff"] > 0


def test_genai_engine_generates_and_scores_like_pytorch(tiny_dirs, tmp_path):
    from babel_edge.runtime.engines import backends_for, open_engine

    lm = _load(tiny_dirs["llama"], PRUNED_WIDTHS)
    out = tmp_path / "onnx"
    export_onnx(lm, out, "fp32", verbose=False)
    assert backends_for(out) == ["onnxruntime", "onnxruntime-genai"]
    eng = open_engine(out, "onnxruntime-genai", threads=1)
    ort_eng = open_engine(out, "onnxruntime", threads=1)
    ids = eng.tokenize("Die Hauptstadt von Deutschland ist Berlin. The capital")
    assert list(eng.generate(ids, N_NEW)) == torch_greedy(lm, ids)
    # benchmarks decode exactly the count asked for, EOS or not
    assert len(list(eng.generate(ids, 30, stop_at_eos=False))) == 30
    # scores (summed NLL) equal PyTorch's
    with torch.no_grad():
        loss = lm.model(torch.tensor([ids]), labels=torch.tensor([ids])).loss.item()
    assert eng.score([ids])[0] == pytest.approx(loss * (len(ids) - 1), rel=1e-4)
    assert ort_eng.score([ids])[0] == pytest.approx(loss * (len(ids) - 1), rel=1e-4)
    # sampling is seeded
    a = list(eng.generate(ids, 20, temperature=0.9, top_p=0.9, seed=7, stop_at_eos=False))
    assert a == list(eng.generate(ids, 20, temperature=0.9, top_p=0.9, seed=7, stop_at_eos=False))
    eng.prefill(ids)
    # both engines count the bytes a token reads alike: the untied embedding is only looked up
    emb = lm.model.get_input_embeddings().weight
    data, graph = (out / "model.onnx_data").stat().st_size, (out / "model.onnx").stat().st_size
    assert eng.weight_bytes() == ort_eng.weight_bytes()
    assert data - emb.numel() * 4 <= eng.weight_bytes() <= data + graph - emb.numel() * 4


def test_engines_refuse_what_they_cannot_run(tiny_dirs, tmp_path, monkeypatch):
    from babel_edge.runtime import engines

    with pytest.raises(UserError, match="genai_config.json"):
        engines.open_engine(tiny_dirs["llama"], "onnxruntime-genai")
    d = tmp_path / "old"
    d.mkdir()
    (d / "model.onnx").write_bytes(b"")
    assert engines.backends_for(d) == ["onnxruntime"]          # an export without genai files
    with pytest.raises(UserError, match="export it"):
        engines.open_engine(d, "onnxruntime-genai")
    monkeypatch.setattr(engines, "_ort_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(engines.DeviceError, match="onnxruntime-genai-cuda"):
        engines.check_device("onnxruntime-genai", "cuda")
    monkeypatch.setattr(engines, "_ort_providers", lambda: ["CUDAExecutionProvider"])
    monkeypatch.setattr(engines, "_genai_cuda", lambda: False)
    lm = _load(tiny_dirs["qwen2"])
    export_onnx(lm, tmp_path / "onnx", "fp32", verbose=False)
    with pytest.raises(engines.DeviceError, match="no CUDA support"):
        engines.open_engine(tmp_path / "onnx", "onnxruntime-genai", "cuda")


def test_bench_measures_both_onnx_engines_and_profiles_decode(tiny_dirs, tmp_path):
    from babel_edge.runtime.bench import decode_profile, markdown, run_bench, subjects

    dense, pruned = tmp_path / "dense", tmp_path / "pruned"
    export_onnx(_load(tiny_dirs["gemma3_text"]), dense, "int8", verbose=False)
    export_onnx(_load(tiny_dirs["gemma3_text"], PRUNED_WIDTHS), pruned, "int8", verbose=False)
    subs = subjects("dense", dense) + subjects("pruned", pruned)
    assert [(s.label, s.backend) for s in subs] == [
        ("dense", "onnxruntime"), ("dense", "onnxruntime-genai"),
        ("pruned", "onnxruntime"), ("pruned", "onnxruntime-genai")]
    res = run_bench(sorted(subs, key=lambda s: (s.backend, s.label != "dense")), rounds=1, threads=1)
    comps = {c["backend"]: c for c in res["comparisons"]}
    assert set(comps) == {"onnxruntime", "onnxruntime-genai"}
    for c in comps.values():
        assert c["ideal_decode_speedup"] > 1 and c["decode_speedup"] > 0
    assert comps["onnxruntime"]["ideal_decode_speedup"] == comps["onnxruntime-genai"]["ideal_decode_speedup"]
    assert "onnxruntime-genai" in markdown(res)
    # where a decoded token's time goes in our engine: kernels by operator, onnxruntime's own
    # work around them, and Python around the session
    p = decode_profile(str(pruned), n_tokens=16, threads=1)
    assert p["tokens"] == 16 and p["weight_bytes_per_token"] > 0
    ops = p["kernel_ms_by_op"]
    assert {"GroupQueryAttention", "MatMulNBits", "SkipSimplifiedLayerNormalization"} <= set(ops)
    parts = p["step_ms_parts"]
    assert set(parts) == {"kernels", "onnxruntime_outside_kernels", "python_outside_session"}
    assert sum(parts.values()) == pytest.approx(p["step_ms"], rel=1e-6)
    assert sum(ops.values()) == pytest.approx(parts["kernels"], rel=1e-6)
    json.dumps(p)


@pytest.mark.integration
def test_embedded_model_runs_in_genai(tmp_path):
    """Gemma 3 270M (262k-token SentencePiece vocabulary, sliding-window layers): exported,
    loaded by onnxruntime-genai, tokenized by genai as by transformers, greedy text equal to
    PyTorch's."""
    lm = load_model(None)
    s = export_onnx(lm, tmp_path / "onnx", "fp32", verbose=False)
    assert s["genai"]["parity"]["passed"] and s["genai"]["type"] == "gemma3_text"
    check_config_names_the_graph(tmp_path / "onnx")
    model = og.Model(str(tmp_path / "onnx"))
    tok = og.Tokenizer(model)
    tok.update_options(add_special_tokens="true")
    for prompt in ["The capital of France is", "Die Hauptstadt von Deutschland ist",
                   "1, 2, 3, 4,", "Москва — столица"]:
        ids = [int(i) for i in tok.encode(prompt)]
        assert ids == list(lm.tokenizer(prompt)["input_ids"])
        want = torch_greedy(lm, ids, 16)
        got = genai_greedy(model, ids, 16)
        assert got == want, prompt
        assert tok.decode(np.array(got, np.int32)) == lm.tokenizer.decode(want, skip_special_tokens=True)

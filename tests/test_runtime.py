"""Engines, device selection and the benchmark on tiny models."""
import json

import numpy as np
import pytest

from babel_edge.errors import UserError
from babel_edge.runtime import engines
from babel_edge.runtime.engines import DeviceError, TorchEngine, check_device, detect_backend, sample


def test_device_selection_refuses_missing_gpu(monkeypatch):
    monkeypatch.setattr(engines, "_torch_cuda", lambda: False)
    monkeypatch.setattr(engines, "_ort_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(engines, "_llama_gpu", lambda: False)
    for backend, hint in [("torch", "PyTorch"), ("onnxruntime", "onnxruntime-gpu"),
                          ("llama.cpp", "GGML_CUDA")]:
        check_device(backend, "cpu")
        with pytest.raises(DeviceError, match=hint):
            check_device(backend, "cuda")
    with pytest.raises(DeviceError, match="unknown device"):
        check_device("torch", "tpu")


def test_device_selection_accepts_present_gpu(monkeypatch):
    monkeypatch.setattr(engines, "_torch_cuda", lambda: True)
    monkeypatch.setattr(engines, "_ort_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(engines, "_llama_gpu", lambda: True)
    for backend in engines.BACKENDS:
        check_device(backend, "cuda")


def test_real_machine_gpu_state_is_reported_not_faked(tiny_dirs):
    """Without a GPU, asking for one fails with a clear message; with one, the engine is on it."""
    import torch

    if torch.cuda.is_available():
        eng = engines.open_engine(str(tiny_dirs["llama"]), "torch", "cuda")
        assert eng.device == "cuda" and next(eng.model.parameters()).is_cuda
        eng.close()
    else:
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            engines.open_engine(str(tiny_dirs["llama"]), "torch", "cuda")


def test_detect_backend(tmp_path, tiny_dirs):
    g = tmp_path / "m.gguf"
    g.write_bytes(b"GGUF")
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"")
    assert detect_backend(g) == "llama.cpp"
    assert detect_backend(tmp_path / "onnx") == "onnxruntime"
    assert detect_backend(tiny_dirs["llama"]) == "torch"
    (tmp_path / "weights.safetensors").write_bytes(b"x")        # a file that is no artefact
    with pytest.raises(UserError, match="not a .gguf"):
        detect_backend(tmp_path / "weights.safetensors")
    with pytest.raises(UserError, match="ONNX export"):
        engines.open_engine(tiny_dirs["llama"], "onnxruntime")


def test_sampling_greedy_top_p_and_seed():
    logits = np.array([0.0, 5.0, 1.0, -2.0])
    assert sample(logits, 0.0, 1.0, np.random.default_rng(0)) == 1
    # top_p tiny keeps only the top token
    assert {sample(logits, 1.0, 1e-6, np.random.default_rng(i)) for i in range(20)} == {1}
    draws = [sample(logits, 5.0, 1.0, np.random.default_rng(i)) for i in range(200)]
    assert len(set(draws)) > 2
    assert draws == [sample(logits, 5.0, 1.0, np.random.default_rng(i)) for i in range(200)]


def test_torch_engine_generate_matches_hf_generate(tiny_dirs):
    import torch

    eng = TorchEngine(tiny_dirs["qwen2"])
    ids = eng.tokenize("Die Hauptstadt von Deutschland")
    ours = list(eng.generate(ids, 10, stop_at_eos=False))
    with torch.no_grad():
        ref = eng.model.generate(torch.tensor([ids]), max_new_tokens=10, do_sample=False,
                                 eos_token_id=None, pad_token_id=0)[0, len(ids):].tolist()
    assert ours == ref
    # score equals the NLL of a full forward
    s = eng.score([ids])[0]
    with torch.no_grad():
        loss = eng.model(torch.tensor([ids]), labels=torch.tensor([ids])).loss.item()
    assert s == pytest.approx(loss * (len(ids) - 1), rel=1e-4)


def test_bench_measures_two_subjects(tiny_dirs, tmp_path):
    from babel_edge.runtime.bench import Subject, chart, markdown, run_bench

    subjects = [Subject("dense", str(tiny_dirs["llama"]), "torch"),
                Subject("pruned", str(tiny_dirs["gemma3_text"]), "torch")]
    res = run_bench(subjects, rounds=1, ppl_langs=["en", "de"], ppl_bytes=300, targets=["en"])
    rows = res["results"]
    # a language beside the targets: scored on the unseen text only, on half the bytes
    assert all("de" in r["ppl"] and "de" not in r["ppl_eval"] for r in rows)
    from babel_edge.runtime.bench import measure_ppl

    half = measure_ppl(str(tiny_dirs["llama"]), "torch", "cpu", ["de"], 300, targets=["en"])
    assert half["sets"]["unseen"]["de"] == rows[0]["ppl"]["de"]
    # the headline is the domain held out of every fitting step; in-domain sits beside it
    assert res["unseen_domain"] == "handbook"
    assert all(r["ppl_text"] == "unseen" and r["ppl_eval"]["en"]["n_bytes"] >= 300 for r in rows)
    assert rows[0]["ppl"]["en"]["n_bytes"] != rows[0]["ppl_eval"]["en"]["n_bytes"] or \
        rows[0]["ppl"]["en"]["bits_per_byte"] != rows[0]["ppl_eval"]["en"]["bits_per_byte"]
    assert [r["label"] for r in rows] == ["dense", "pruned"]
    for r in rows:
        assert r["decode_tok_s"]["median"] > 0 and r["prefill512_tok_s"]["median"] > 0
        assert r["rounds"][0]["decode_tokens"] == 128
        assert r["peak_rss_mb"]["median"] > 50
        assert r["ppl"]["en"]["n_tokens"] >= 64 and r["ppl"]["en"]["n_bytes"] >= 300
    c = res["comparisons"][0]
    assert c["ideal_decode_speedup"] == pytest.approx(
        rows[0]["weight_bytes_per_token"] / rows[1]["weight_bytes_per_token"])
    md = markdown(res, ["en"])
    assert "decode speedup" in md and "**en**" in md
    assert md.index("unseen-domain text ('handbook'") < md.index("in-domain eval split")
    chart(res, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").stat().st_size > 1000
    json.dumps(res)


def test_bench_text_is_byte_identical_and_warns_on_different_tokenizers(tiny_dirs, tmp_path):
    """Two tokenizers (byte-level BPE and SentencePiece BPE) score the same bytes; the table
    says their per-token perplexities do not compare, and says nothing when they agree."""
    from babel_edge.models.tiny import build_tiny_model
    from babel_edge.runtime.bench import different_tokenizers_note, measure_ppl

    spm = tmp_path / "spm"
    build_tiny_model("llama", spm, seed=0, tokenizer="spm")
    ma = measure_ppl(str(tiny_dirs["llama"]), "torch", "cpu", ["en", "de"], 600)
    mb = measure_ppl(str(spm), "torch", "cpu", ["en", "de"], 600)
    assert set(ma["sets"]) == {"unseen", "eval"} and ma["unseen_domain"] == mb["unseen_domain"]
    a, b = ma["sets"]["unseen"], mb["sets"]["unseen"]
    for lang in ("en", "de"):
        assert a[lang]["n_bytes"] == b[lang]["n_bytes"] > 0          # the same text
        assert a[lang]["n_tokens"] != b[lang]["n_tokens"]            # split differently
    rows = [{"label": "x", "backend": "torch", "ppl": a}, {"label": "y", "backend": "torch", "ppl": b}]
    note = different_tokenizers_note(rows, ["en", "de"])
    assert note and "do not compare" in note[-1] and "en, de" in note[-1]
    assert different_tokenizers_note(rows[:1] * 2, ["en", "de"]) == []


def test_worker_peak_rss_is_its_own_not_the_parents():
    """A benchmark worker started by a big process must report its own peak memory
    (getrusage's ru_maxrss survives exec on Linux and reported the parent's)."""
    import subprocess
    import sys

    from babel_edge.runtime.bench import peak_rss_mb

    ballast = b"\x01" * (600 << 20)           # 600 MB resident in this process
    parent = peak_rss_mb()
    child = float(subprocess.run(
        [sys.executable, "-c", "from babel_edge.runtime.bench import peak_rss_mb; print(peak_rss_mb())"],
        capture_output=True, text=True, check=True).stdout)
    del ballast
    assert parent > 600 and 0 < child < parent - 500

"""The main job end to end on a tiny model: profile → prune → GGUF + ONNX → bench."""
import json
import threading

import pytest

from babel_edge.pipeline import BuildOptions, Cancelled, build


def test_build_tiny_end_to_end(tiny_dirs, tmp_path):
    stages = []
    opts = BuildOptions(langs=["en", "de"], rate=0.5, model=str(tiny_dirs["llama"]),
                        gguf_quant="f32", onnx_precision="fp32", tokens_per_lang=512,
                        bench_rounds=1, other_langs=["ru"])
    steps = []
    summary = build(opts, tmp_path / "out", on_stage=lambda n, i, k: stages.append(n),
                    on_progress=lambda *a: steps.append(a))
    assert stages == ["profile", "prune", "export", "bench"]
    # every export and every benchmark run is reported, counting up to its stage's total
    exports = [s for s in steps if s[0] == "export"]
    assert [(d, t) for _, d, t, _ in exports] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    runs = [s for s in steps if s[0] == "bench"]
    assert [d for _, d, _, _ in runs] == list(range(1, runs[0][2] + 1)) and runs[0][2] == 4 + 4
    art = summary["artefacts"]
    for key in ("profile", "pruned_model", "gguf_dense", "gguf_pruned", "onnx_dense", "onnx_pruned",
                "bench"):
        assert key in art
    bench = json.loads((tmp_path / "out" / "bench" / "bench.json").read_text())
    backends = {r["backend"] for r in bench["results"]}
    assert backends == {"llama.cpp", "onnxruntime"}
    for c in bench["comparisons"]:
        assert c["size_ratio"] < 1.0            # the pruned artefact is smaller
        assert c["ideal_decode_speedup"] > 1.0
    assert (tmp_path / "out" / "build_summary.json").exists()
    # a second build reuses the cached profile
    opts.bench = False
    opts.force = True
    again = build(opts, tmp_path / "out", on_stage=None)
    assert again["profile_cached"] is True


def test_build_cancel_before_start_leaves_nothing(tiny_dirs, tmp_path):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        build(BuildOptions(langs=["en"], model=str(tiny_dirs["llama"]), tokens_per_lang=256),
              tmp_path / "out", cancel=cancel)
    assert not (tmp_path / "out" / "build_summary.json").exists()


def test_build_cancel_during_export_writes_no_summary(tiny_dirs, tmp_path):
    """Cancelling after the first exported file stops before the next one."""
    cancel = threading.Event()
    seen = []

    def on_progress(stage, done, total, what):
        seen.append((stage, done))
        cancel.set()

    opts = BuildOptions(langs=["en"], model=str(tiny_dirs["llama"]), gguf_quant="f32",
                        onnx_precision=None, tokens_per_lang=256, bench=False)
    with pytest.raises(Cancelled):
        build(opts, tmp_path / "out", cancel=cancel, on_progress=on_progress)
    assert seen == [("export", 1)]
    out = tmp_path / "out"
    assert (out / "dense.f32.gguf").exists() and not (out / "pruned.f32.gguf").exists()
    assert not (out / "build_summary.json").exists()

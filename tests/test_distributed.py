"""Data parallelism on torch.distributed (gloo, 2 processes on CPU): profiling and calibration
give the files one process gives — counts exactly, float64 sums to 1e-9 relative."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import torch

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]


def _env(tmp_path):
    return dict(os.environ, BABEL_EDGE_CACHE=str(tmp_path / "cache"), BABEL_EDGE_QUIET="1",
                OMP_NUM_THREADS="1")


def test_profile_on_two_processes_equals_one(tiny_dirs, tmp_path):
    from safetensors.torch import load_file

    args = ["profile", "--model", str(tiny_dirs["llama"]), "--langs", "en,de",
            "--tokens-per-lang", "768", "--min-tokens", "64", "--experts-size", "16",
            "--max-len", "64", "--batch-size", "4"]
    one = subprocess.run([sys.executable, "-m", "babel_edge", *args, "--out", str(tmp_path / "one.st")],
                         env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([*TORCHRUN, "-m", "babel_edge", *args, "--out", str(tmp_path / "two.st")],
                         env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = load_file(str(tmp_path / "one.st")), load_file(str(tmp_path / "two.st"))
    assert a.keys() == b.keys()
    for k in a:
        if a[k].dtype in (torch.int64, torch.int32):
            assert torch.equal(a[k], b[k]), k                     # counts: exactly
        else:
            assert torch.allclose(a[k], b[k], rtol=1e-9, atol=0), k
    from babel_edge.profile import load_profile
    assert load_profile(tmp_path / "two.st").header["run"]["processes"] == 2


def test_calibration_on_two_processes_equals_one(tiny_dirs, tmp_path):
    driver = tmp_path / "calib.py"
    driver.write_text(textwrap.dedent(f"""
        import sys, torch
        from babel_edge import distributed as dd
        from babel_edge.corpus import load_corpus
        from babel_edge.models import load_model
        from babel_edge.prune.calibration import calibrate, save
        dd.init()
        torch.set_num_threads(1)
        lm = load_model({str(tiny_dirs["llama"])!r})
        corpus = load_corpus()
        cal = calibrate(lm.model, lm.tokenizer, lm.fingerprint,
                        lambda l: corpus.texts(l, "profile"), ["en", "de"], 2048,
                        cache=__import__("pathlib").Path(sys.argv[2]))
        if dd.is_main():
            save(cal, __import__("pathlib").Path(sys.argv[1]))
        dd.finish()
    """))
    r1 = subprocess.run([sys.executable, str(driver), str(tmp_path / "one.st"), str(tmp_path / "c1")],
                        env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert r1.returncode == 0, r1.stderr
    r2 = subprocess.run([*TORCHRUN, str(driver), str(tmp_path / "two.st"), str(tmp_path / "c2")],
                        env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0, r2.stderr[-2000:]
    from babel_edge.prune.calibration import load

    a, b = load(tmp_path / "one.st"), load(tmp_path / "two.st")
    assert a.n_tokens == b.n_tokens and a.key == b.key
    for x, y in zip(a.second + a.mean_abs, b.second + b.mean_abs):
        assert torch.allclose(x, y, rtol=1e-6, atol=1e-12)        # stored as float32
    for x, y in zip(a.max_abs, b.max_abs):
        assert torch.equal(x, y)


def test_healing_on_two_processes_equals_one(tiny_dirs, tmp_path):
    """Block reconstruction and distillation under 2 gloo processes take the steps of one
    process (same global batches): the healed weights agree to float summation order."""
    from babel_edge.prune import PruneOptions, prune

    pruned = tmp_path / "pruned"
    prune(str(tiny_dirs["gemma3_text"]), None, ["en", "de"], 0.5, pruned,
          options=PruneOptions(strategy="magnitude", schedule="uniform", calib_tokens=256,
                               multiple_of=16))
    driver = tmp_path / "heal.py"
    driver.write_text(textwrap.dedent(f"""
        import sys, torch
        from safetensors.torch import save_file
        from babel_edge import distributed as dd
        from babel_edge.corpus import load_corpus
        from babel_edge.heal import HealOptions
        from babel_edge.heal.data import training_text
        from babel_edge.heal.run import heal_loaded
        from babel_edge.models import ffn_layers, load_model
        dd.init()
        torch.set_num_threads(1)
        dense = load_model({str(tiny_dirs["gemma3_text"])!r})
        student = load_model({str(pruned)!r})
        corpus = load_corpus()
        text = training_text(["en", "de"], lambda l: corpus.texts(l, "profile"),
                             student.tokenizer, 32, 1024)
        o = HealOptions(tokens=1024, seq_len=32, epochs=2, lr=3e-3, batch_tokens=128,
                        distill_steps=3, distill_batch=4, distill_lr=1e-3)
        heal_loaded(dense.model, student.model, text, o)
        if dd.is_main():
            save_file({{f"{{v.index}}.{{n}}": getattr(v, n).weight.contiguous()
                       for v in ffn_layers(student.model) for n in ("gate", "up", "down")}},
                      sys.argv[1])
        dd.finish()
    """))
    r1 = subprocess.run([sys.executable, str(driver), str(tmp_path / "one.st")], env=_env(tmp_path),
                        capture_output=True, text=True, timeout=600)
    assert r1.returncode == 0, r1.stderr[-2000:]
    r2 = subprocess.run([*TORCHRUN, str(driver), str(tmp_path / "two.st")], env=_env(tmp_path),
                        capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0, r2.stderr[-2000:]
    from safetensors.torch import load_file

    a, b = load_file(str(tmp_path / "one.st")), load_file(str(tmp_path / "two.st"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5), (k, float((a[k] - b[k]).abs().max()))
    src = load_file(str(pruned / "model.safetensors"))
    moved = [k for k in a if not torch.allclose(
        a[k], src[f"model.layers.{k.split('.')[0]}.mlp.{k.split('.')[1]}_proj.weight"])]
    assert len(moved) == len(a)                                  # healing changed every weight


def test_streamed_prune_equals_the_in_memory_path(tiny_dirs, tmp_path, monkeypatch):
    """Pruning tensor by tensor from safetensors writes the tensors the in-memory path writes,
    bit for bit — with and without compensation, for a Llama and a Gemma 3."""
    from safetensors.torch import load_file

    from babel_edge.corpus import load_corpus
    from babel_edge.models import load_model
    from babel_edge.prune import PruneOptions, prune_loaded, save_pruned
    from babel_edge.prune.calibration import calibrate
    from babel_edge.prune.stream import plan_streamed, prune_streamed

    monkeypatch.setenv("BABEL_EDGE_CACHE", str(tmp_path / "cache"))
    corpus = load_corpus()
    texts = lambda l: corpus.texts(l, "profile")  # noqa: E731
    for family in ("llama", "gemma3_text"):
        lm = load_model(str(tiny_dirs[family]))
        cal = calibrate(lm.model, lm.tokenizer, lm.fingerprint, texts, ["en"], 512)
        for compensate in (False, True):
            o = PruneOptions(strategy="magnitude", schedule="uniform", compensate=compensate,
                             multiple_of=16)
            model, plan = prune_loaded(lm, ["en"], 0.5, o, calibration=cal)
            mem = save_pruned(model, tmp_path / f"{family}-{compensate}-mem", plan, lm.path,
                              lm.tokenizer)
            splan = plan_streamed(lm.path, ["en"], 0.5, o, calibration=cal)
            assert splan.kept == plan.kept
            st = prune_streamed(lm.path, splan, tmp_path / f"{family}-{compensate}-st",
                                calibration=cal if compensate else None, shard_bytes=64 << 10)
            a = load_file(str(mem / "model.safetensors"))
            b = {}
            for f in st.glob("*.safetensors"):
                b.update(load_file(str(f)))
            assert a.keys() == b.keys()
            for k in a:
                assert torch.equal(a[k], b[k]), (family, compensate, k)
            again = load_model(str(st))                       # an ordinary pruned directory
            ids = torch.tensor([lm.tokenizer("Hallo Welt")["input_ids"]])
            with torch.no_grad():
                assert torch.equal(again.model(ids).logits, model(ids).logits)


def test_streamed_gguf_export_equals_the_in_memory_export(tiny_dirs, tmp_path, monkeypatch):
    """The layer-by-layer GGUF export writes the tensors and hyper-parameters the in-memory
    export writes (per-layer widths: deci for Llama, gemma4 for Gemma 3), and passes parity."""
    import gguf

    from babel_edge.corpus import load_corpus
    from babel_edge.exporters.gguf import export_gguf
    from babel_edge.exporters.gguf.stream import export_gguf_streamed
    from babel_edge.models import load_model
    from babel_edge.prune import PruneOptions, prune_loaded, save_pruned

    monkeypatch.setenv("BABEL_EDGE_CACHE", str(tmp_path / "cache"))
    corpus = load_corpus()
    for family, arch in (("llama", "deci"), ("gemma3_text", "gemma4")):
        lm = load_model(str(tiny_dirs[family]))
        model, plan = prune_loaded(lm, ["en"], 0.5, PruneOptions(strategy="magnitude",
                                   schedule="uniform", multiple_of=16),
                                   texts_for=lambda l: corpus.texts(l, "profile"),
                                   widths=[96, 160, 128, 128])
        d = save_pruned(model, tmp_path / family, plan, lm.path, lm.tokenizer)
        a = export_gguf(str(d), tmp_path / f"{family}-mem.gguf", "f16", threads=1, verbose=False)
        b = export_gguf_streamed(d, tmp_path / f"{family}-st.gguf", "f16", threads=1)
        assert a["architecture"] == b["architecture"] == arch and b["parity"]["passed"]
        ra, rb = gguf.GGUFReader(a["path"]), gguf.GGUFReader(b["path"])
        ta = {t.name: (t.tensor_type, np.array(t.data)) for t in ra.tensors}
        tb = {t.name: (t.tensor_type, np.array(t.data)) for t in rb.tensors}
        assert ta.keys() == tb.keys()
        for k in ta:
            assert ta[k][0] == tb[k][0] and np.array_equal(ta[k][1], tb[k][1]), (family, k)
        for key in (f"{arch}.feed_forward_length", f"{arch}.block_count", "tokenizer.ggml.tokens"):
            fa, fb = ra.fields[key], rb.fields[key]
            assert [fa.parts[i].tolist() for i in fa.data] == [fb.parts[i].tolist() for i in fb.data]

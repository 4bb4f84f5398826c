"""The main job in one call: profile → prune → export → bench → summary.

Each stage is the same library function its own CLI command calls; this module
only chains them, caches the profile, and records every artefact's path. The
profile is reused from the cache when the model (fingerprint), the corpus, the
languages and the profiling settings have not changed. Stages report through
`on_stage(name, index, total)`; the export and bench stages also report each
finished step through `on_progress(stage, done, total, what)`. `cancel` (a
threading.Event) is checked between stages and between those steps, so a front
end (the TUI) can show progress and stop the work.
Every stage writes atomically, so a cancelled build leaves no artefact that
looks complete.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .errors import UserError

STAGES = ("profile", "prune", "export", "bench")


class Cancelled(Exception):
    pass


@dataclass
class BuildOptions:
    langs: Sequence[str]
    rate: float = 0.5
    model: str | None = None                 # None: the embedded default
    gguf_quant: str | None = "q8_0"          # None: no GGUF
    onnx_precision: str | None = "int8"      # None: no ONNX
    tokens_per_lang: int = 8192
    strategy: str = "mass"
    schedule: str = "adaptive"
    granularity: str = "neuron"
    compensate: bool = True
    trim_vocab: bool = False                 # also trim the vocabulary to the targets (vocab.py)
    bench_rounds: int = 3
    bench: bool = True
    other_langs: Sequence[str] = ("ru", "zh", "ar")
    force: bool = False
    extra: dict = field(default_factory=dict)


def _profile_cache_path(fingerprint: str, langs: Sequence[str], opts: BuildOptions) -> Path:
    from . import __version__
    from .corpus import corpus_digest
    from .models import cache_dir

    key = json.dumps({"fp": fingerprint, "langs": sorted(langs), "tokens": opts.tokens_per_lang,
                      "corpus": corpus_digest(), "v": __version__}, sort_keys=True)
    h = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "profiles" / f"{h}.profile.safetensors"


def build(opts: BuildOptions, out_dir: str | Path,
          on_stage: Callable[[str, int, int], None] | None = None,
          cancel: threading.Event | None = None,
          on_progress: Callable[[str, int, int, str], None] | None = None) -> dict:
    """Run the whole job; returns the summary (also written to out_dir/build_summary.json)."""
    from .corpus import load_corpus, parse_langs
    from .models import load_model
    from .profile import load_profile, profile_model, save_profile
    from .prune import prune

    langs = parse_langs(",".join(opts.langs)) if not isinstance(opts.langs, str) else parse_langs(opts.langs)
    if not langs:
        raise UserError("choose at least one target language (e.g. --langs en,de,fr)")
    if not 0 < opts.rate < 1:
        raise UserError(f"the pruning rate must be between 0 and 1 (exclusive), not {opts.rate}")
    out = Path(out_dir).expanduser()
    if out.exists() and any(out.iterdir()) and not opts.force:
        raise UserError(f"'{out}' exists and is not empty; choose another --out or pass --force")
    out.mkdir(parents=True, exist_ok=True)
    corpus = load_corpus()
    for l in langs:
        corpus.texts(l, "profile")
    stages = [s for s in STAGES if s != "bench" or opts.bench]
    summary: dict = {"langs": langs, "rate": opts.rate, "model": opts.model or "gemma-3-270m",
                     "trim_vocab": opts.trim_vocab, "artefacts": {}, "timings_s": {}}

    def stage(name: str) -> float:
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"cancelled before {name}")
        if on_stage:
            on_stage(name, stages.index(name), len(stages))
        return time.perf_counter()

    def step(name: str, done: int, total: int, what: str) -> None:
        if on_progress:
            on_progress(name, done, total, what)
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"cancelled during {name}")

    # 1. profile (cached)
    t = stage("profile")
    lm = load_model(opts.model)
    prof_path = _profile_cache_path(lm.fingerprint, langs, opts)
    if prof_path.exists():
        profile = load_profile(prof_path, model_fingerprint=lm.fingerprint)
        summary["profile_cached"] = True
    else:
        prof_path.parent.mkdir(parents=True, exist_ok=True)
        profile = profile_model(lm, langs, lambda l: corpus.texts(l, "profile"),
                                tokens_per_lang=opts.tokens_per_lang)
        save_profile(profile, prof_path)
        summary["profile_cached"] = False
    summary["artefacts"]["profile"] = str(prof_path)
    summary["timings_s"]["profile"] = time.perf_counter() - t

    # 2. prune
    t = stage("prune")
    pruned_dir = out / "pruned"
    # an earlier pruned model at the same path is replaced (atomically) by prune itself
    prune(opts.model, prof_path, langs, opts.rate, pruned_dir, strategy=opts.strategy,
          schedule=opts.schedule, granularity=opts.granularity, compensate=opts.compensate,
          trim_vocab=opts.trim_vocab, other_langs=opts.other_langs)
    summary["artefacts"]["pruned_model"] = str(pruned_dir)
    summary["timings_s"]["prune"] = time.perf_counter() - t

    # 3. export dense and pruned in each format (dense is the benchmark's baseline)
    t = stage("export")
    bench_dense, bench_pruned = [], []
    exports = {}
    n_exports = 2 * (bool(opts.gguf_quant) + bool(opts.onnx_precision))
    if opts.gguf_quant:
        from .exporters.gguf import export_gguf
        for label, src in (("dense", lm), ("pruned", pruned_dir)):
            p = out / f"{label}.{opts.gguf_quant}.gguf"
            exports[f"gguf_{label}"] = export_gguf(src, p, opts.gguf_quant, force=True, verbose=False)
            (bench_dense if label == "dense" else bench_pruned).append(str(p))
            summary["artefacts"][f"gguf_{label}"] = str(p)
            step("export", len(exports), n_exports, f"GGUF {label} (parity passed)")
    if opts.onnx_precision:
        from .exporters.onnx import export_onnx
        for label, src in (("dense", lm), ("pruned", pruned_dir)):
            p = out / f"onnx-{label}-{opts.onnx_precision}"
            exports[f"onnx_{label}"] = export_onnx(src, p, opts.onnx_precision, force=True, verbose=False)
            (bench_dense if label == "dense" else bench_pruned).append(str(p))
            summary["artefacts"][f"onnx_{label}"] = str(p)
            step("export", len(exports), n_exports, f"ONNX {label} (parity passed)")
    summary["exports"] = {k: {kk: v.get(kk) for kk in ("file_bytes", "bytes", "size_bytes", "parity")
                              if kk in v} for k, v in exports.items()}
    summary["timings_s"]["export"] = time.perf_counter() - t
    del lm

    # 4. bench
    if opts.bench and bench_dense:
        from .runtime.bench import Subject, chart, markdown, run_bench
        from .runtime.engines import detect_backend

        t = stage("bench")
        subjects = sorted([Subject("dense", p, detect_backend(p)) for p in bench_dense] +
                          [Subject("pruned", p, detect_backend(p)) for p in bench_pruned],
                          key=lambda s: (s.backend, s.label != "dense"))
        others = [l for l in opts.other_langs if l not in langs]
        res = run_bench(subjects, "cpu", opts.bench_rounds, None, langs + others, 1024,
                        progress=lambda done, total, what: step("bench", done, total, what))
        res["targets"] = langs
        bdir = out / "bench"
        bdir.mkdir(exist_ok=True)
        _write(bdir / "bench.json", json.dumps(res, indent=2))
        md = markdown(res, langs)
        _write(bdir / "bench.md", md)
        chart(res, bdir / "bench.png")
        summary["bench_markdown"] = md
        summary["artefacts"]["bench"] = str(bdir)
        summary["timings_s"]["bench"] = time.perf_counter() - t

    _write(out / "build_summary.json", json.dumps(summary, indent=2, default=str))
    return summary


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)

"""The main job in one call: profile → prune → export → bench → summary.

Each stage is the same library function its own CLI command calls; this module only
chains them, caches the profile, and records every artefact's path. The profile is
reused from the cache when the model (fingerprint), the corpus, the languages and the
profiling settings have not changed. Stages report through `on_stage(name, index,
total)`; the export and bench stages also report each finished step through
`on_progress(stage, done, total, what)`. `cancel` (a threading.Event) is checked between
stages and between those steps, so a front end (the TUI) can show progress and stop
the work. Every stage writes atomically, so a cancelled build leaves no artefact that
looks complete.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from . import precision as P
from .errors import UserError
from .evaluate import DEFAULT_OTHER_LANGS
from .prune.options import PruneOptions, check_rate

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
    prune: PruneOptions = field(default_factory=PruneOptions)
    bench_rounds: int = 3
    bench: bool = True
    other_langs: Sequence[str] = DEFAULT_OTHER_LANGS
    force: bool = False

    def validate(self) -> list[str]:
        """The target languages, parsed; UserError for anything wrong (before any work)."""
        from .corpus import load_corpus, parse_langs

        langs = parse_langs(self.langs, load_corpus())     # the corpus's own tags (zh -> zh-Hans)
        self.prune.validate()
        check_rate(self.rate, allow_zero=self.prune.trim_vocab)
        if self.gguf_quant:
            self.gguf_quant = P.get("gguf", self.gguf_quant).name
        if self.onnx_precision:
            self.onnx_precision = P.get("onnx", self.onnx_precision).name
        if self.tokens_per_lang < 1 or self.bench_rounds < 1:
            raise UserError("--tokens-per-lang and --rounds must be positive")
        return langs


@dataclass
class _Run:
    """What one build carries from stage to stage."""
    opts: BuildOptions
    langs: list[str]
    out: Path
    stages: list[str]
    on_stage: Callable | None
    on_progress: Callable | None
    cancel: threading.Event | None
    summary: dict

    def stage(self, name: str) -> float:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(f"cancelled before {name}")
        if self.on_stage:
            self.on_stage(name, self.stages.index(name), len(self.stages))
        return time.perf_counter()

    def step(self, name: str, done: int, total: int, what: str) -> None:
        if self.on_progress:
            self.on_progress(name, done, total, what)
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(f"cancelled during {name}")

    def done(self, name: str, t0: float) -> None:
        self.summary["timings_s"][name] = time.perf_counter() - t0


def profile_cache_path(fingerprint: str, langs: Sequence[str], tokens_per_lang: int) -> Path:
    from . import __version__
    from .corpus import corpus_digest
    from .models import cache_dir

    key = json.dumps({"fp": fingerprint, "langs": sorted(langs), "tokens": tokens_per_lang, "text": "fitting",
                      "corpus": corpus_digest(), "v": __version__}, sort_keys=True)
    h = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "profiles" / f"{h}.profile.safetensors"


def profile_step(run: _Run, lm, corpus) -> Path | None:
    """The targets' profile, from the cache when this model, text and setting were seen (None
    when nothing reads it: rate 0 trims the vocabulary only)."""
    from .profile import load_profile, profile_model, save_profile

    if run.opts.rate == 0:
        return None
    path = profile_cache_path(lm.fingerprint, run.langs, run.opts.tokens_per_lang)
    if path.exists():
        load_profile(path, model_fingerprint=lm.fingerprint)     # readable and of this model
        run.summary["profile_cached"] = True
    else:
        from .prune.run import fitting_texts

        profile = profile_model(lm, run.langs, fitting_texts(corpus, run.langs),
                                tokens_per_lang=run.opts.tokens_per_lang)
        save_profile(profile, path)
        run.summary["profile_cached"] = False
    run.summary["artefacts"]["profile"] = str(path)
    return path


def prune_step(run: _Run, profile: Path) -> Path:
    from .prune import prune

    pruned_dir = run.out / "pruned"
    # an earlier pruned model at the same path is replaced (atomically) by prune itself
    prune(run.opts.model, profile, run.langs, run.opts.rate, pruned_dir, options=run.opts.prune,
          other_langs=run.opts.other_langs,
          heal_progress=lambda stage, done, total, extra: run.step(
              "prune", done, total, f"healing: {stage} {extra}".strip()))
    run.summary["artefacts"]["pruned_model"] = str(pruned_dir)
    return pruned_dir


def export_step(run: _Run, lm, pruned_dir: Path) -> list[tuple[str, str]]:
    """Dense and pruned in each format; returns (label, artefact path) for the bench."""
    o = run.opts
    jobs = []
    if o.gguf_quant:
        jobs += [("gguf", label, src, run.out / f"{label}.{o.gguf_quant}.gguf")
                 for label, src in (("dense", lm), ("pruned", pruned_dir))]
    if o.onnx_precision:
        jobs += [("onnx", label, src, run.out / f"onnx-{label}-{o.onnx_precision}")
                 for label, src in (("dense", lm), ("pruned", pruned_dir))]
    made, exports = [], {}
    for fmt, label, src, path in jobs:
        if fmt == "gguf":
            from .exporters.gguf import export_gguf
            exports[f"gguf_{label}"] = export_gguf(src, path, o.gguf_quant, force=True, verbose=False)
        else:
            from .exporters.onnx import export_onnx
            exports[f"onnx_{label}"] = export_onnx(src, path, o.onnx_precision, force=True,
                                                   verbose=False)
        made.append((label, str(path)))
        run.summary["artefacts"][f"{fmt}_{label}"] = str(path)
        run.step("export", len(made), len(jobs), f"{fmt.upper() if fmt == 'gguf' else 'ONNX'} "
                                                 f"{label} (parity passed)")
    run.summary["exports"] = {k: {kk: v.get(kk) for kk in ("file_bytes", "parity") if kk in v}
                              for k, v in exports.items()}
    return made


def bench_step(run: _Run, artefacts: list[tuple[str, str]]) -> None:
    from .runtime.bench import Subject, markdown, run_bench, write_results
    from .runtime.engines import detect_backend

    subjects = sorted([Subject(label, p, detect_backend(p)) for label, p in artefacts],
                      key=lambda s: (s.backend, s.label != "dense"))
    others = [l for l in run.opts.other_langs if l not in run.langs]
    res = run_bench(subjects, "cpu", run.opts.bench_rounds, None, run.langs + others,
                    progress=lambda done, total, what: run.step("bench", done, total, what),
                    targets=run.langs)
    res["targets"] = run.langs
    bdir = run.out / "bench"
    write_results(res, bdir, run.langs)
    run.summary["bench_markdown"] = markdown(res, run.langs)
    run.summary["artefacts"]["bench"] = str(bdir)


def build(opts: BuildOptions, out_dir: str | Path,
          on_stage: Callable[[str, int, int], None] | None = None,
          cancel: threading.Event | None = None,
          on_progress: Callable[[str, int, int, str], None] | None = None) -> dict:
    """Run the whole job; returns the summary (also written to out_dir/build_summary.json)."""
    from .corpus import load_corpus
    from .io import write_json
    from .models import load_model

    langs = opts.validate()
    out = Path(out_dir).expanduser()
    if out.exists() and any(out.iterdir()) and not opts.force:
        raise UserError(f"'{out}' exists and is not empty; choose another --out or pass --force")
    corpus = load_corpus()
    for l in langs:
        corpus.texts(l, "profile")
    out.mkdir(parents=True, exist_ok=True)
    stages = [s for s in STAGES if s != "bench" or opts.bench]
    summary: dict = {"langs": langs, "rate": opts.rate, "model": opts.model or "gemma-3-270m",
                     "trim_vocab": opts.prune.trim_vocab, "artefacts": {}, "timings_s": {}}
    run = _Run(opts, langs, out, stages, on_stage, on_progress, cancel, summary)

    t = run.stage("profile")
    lm = load_model(opts.model)
    profile = profile_step(run, lm, corpus)
    run.done("profile", t)

    t = run.stage("prune")
    pruned_dir = prune_step(run, profile)
    run.done("prune", t)

    t = run.stage("export")
    artefacts = export_step(run, lm, pruned_dir)
    run.done("export", t)
    del lm

    if opts.bench and artefacts:
        t = run.stage("bench")
        bench_step(run, artefacts)
        run.done("bench", t)

    write_json(out / "build_summary.json", summary)
    return summary

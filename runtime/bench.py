"""Benchmark exported models side by side: dense against pruned, one engine or several.

Every figure is measured in one run, on the same machine, alternating between
the models round by round (dense, pruned, dense, pruned, ...) so that drift of
a shared machine hits both alike. Each (model, round) runs in a fresh worker
process, which also makes load time and peak RSS honest (nothing cached in the
parent). Per round: warm-up, then prefill of 128- and 512-token prompts and a
128-token greedy decode (EOS ignored so every run decodes the same count).
Reported: median and spread (min–max) over rounds; perplexity once per model
(it is deterministic). The ideal decode speedup is the ratio of weight bytes a
decoded token reads (dense ÷ pruned): decode on these models is memory-bound,
so that is what a perfect implementation would gain.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from babel_edge.errors import UserError

PREFILL_LENGTHS = (128, 512)
DECODE_TOKENS = 128


@dataclass
class Subject:
    label: str            # e.g. "dense", "pruned"
    path: str             # artefact: .gguf, ONNX dir, or model dir
    backend: str          # torch | llama.cpp | onnxruntime | onnxruntime-genai
    # another build of the same engine, e.g. an earlier babel-edge: its name in the tables and
    # what its worker processes need (PYTHONPATH of that code)
    variant: str = ""
    env: dict | None = None

    @property
    def engine(self) -> str:
        return f"{self.backend} ({self.variant})" if self.variant else self.backend

    @property
    def key(self) -> str:
        return f"{self.label}|{self.engine}"


def subjects(label: str, path: str | Path) -> list[Subject]:
    """One Subject per back end that runs the artefact (engines.backends_for): a babel-edge
    ONNX export is measured in onnxruntime and in onnxruntime-genai."""
    from .engines import backends_for

    return [Subject(label, str(path), b) for b in backends_for(path)]


def artefact_bytes(path: str | Path) -> int:
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def prompt_ids(engine, n: int, lang: str = "en") -> list[int]:
    """n tokens of real eval-split text (paragraphs joined), so prefill sees real tokens."""
    from babel_edge.corpus import load_corpus

    ids: list[int] = engine.tokenize("\n\n".join(load_corpus().texts(lang, "eval")[:400]))
    if len(ids) < n:
        raise UserError(f"not enough '{lang}' eval text for a {n}-token prompt")
    return ids[:n]


def _decode_timed(engine, ids: list[int], n: int) -> tuple[float, int]:
    """Seconds for n decoded tokens after the prompt (prefill excluded)."""
    gen = engine.generate(ids, n, temperature=0.0, stop_at_eos=False)
    next(gen)                          # prefill + first token
    t0, k = time.perf_counter(), 0
    for _ in gen:
        k += 1
    return time.perf_counter() - t0, k


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux: VmHWM, which starts afresh at exec;
    getrusage's ru_maxrss does not (a worker started by a 7 GB parent reported 7 GB).
    Elsewhere ru_maxrss (kilobytes on Linux, bytes on macOS)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024


def measure_speed(path: str, backend: str, device: str, threads: int | None,
                  prompt_lang: str = "en") -> dict:
    """One round in this process: load, warm up, prefill 128/512, decode 128."""
    from .engines import open_engine

    rss0 = peak_rss_mb()
    t0 = time.perf_counter()
    engine = open_engine(path, backend, device, n_ctx=1024, threads=threads)
    load_s = time.perf_counter() - t0
    out: dict = {"load_s": load_s}
    _decode_timed(engine, prompt_ids(engine, 32, prompt_lang), 8)         # warm-up
    for n in PREFILL_LENGTHS:
        ids = prompt_ids(engine, n, prompt_lang)
        t = time.perf_counter()
        engine.prefill(ids)
        out[f"prefill{n}_tok_s"] = n / (time.perf_counter() - t)
    secs, k = _decode_timed(engine, prompt_ids(engine, 32, prompt_lang), DECODE_TOKENS + 1)
    out["decode_tok_s"] = k / secs
    out["decode_tokens"] = k
    out["weight_bytes_per_token"] = engine.weight_bytes()
    out["peak_rss_mb"] = peak_rss_mb()
    out["rss_before_load_mb"] = rss0
    if device == "cuda":
        out.update(engine.gpu_memory())
    engine.close()
    return out


def measure_ppl(path: str, backend: str, device: str, langs: Sequence[str], max_bytes: int,
                targets: Sequence[str] = ()) -> dict:
    """Bits per byte and perplexity per language on the text sets of babel_edge.evaluate
    (text_sets: first the eval split of the domain held out of every fitting step for
    `targets` — or for `langs` — then the in-domain eval split), the same bytes for every
    artefact, whatever its tokenizer. Returns {"unseen_domain": name or None,
    "sets": {set name: {lang: score}}}; a language without text in a set is left out there.
    With `targets`, the other languages (reported beside them to show what the targets cost
    the rest) are scored on the first set only, on max_bytes // 2 bytes: the in-domain set
    is there to sit beside the targets' unseen figure, and full-vocabulary scoring is most of
    a bench's time."""
    from babel_edge.corpus import load_corpus
    from babel_edge.evaluate import DEFAULT_MAX_LEN, evaluate_languages, text_sets

    from .engines import open_engine

    corpus = load_corpus()
    unseen, sets = text_sets(corpus, list(targets) or list(langs))
    engine = open_engine(path, backend, device, n_ctx=DEFAULT_MAX_LEN + 16)
    out = {"unseen_domain": unseen, "sets": {}}
    try:
        for i, (name, texts_for) in enumerate(sets.items()):
            groups = [([l for l in langs if l in targets or not targets], max_bytes)]
            if targets and i == 0:
                groups.append(([l for l in langs if l not in targets], max_bytes // 2))
            out["sets"][name] = {}
            for group, nbytes in groups:
                have = [l for l in group if texts_for(l)]
                res = evaluate_languages(have, texts_for, engine.tokenize, engine.score,
                                         max_bytes=nbytes, batch_size=4, text=name,
                                         label=f"bits per byte ({name}) {Path(path).name}")
                out["sets"][name].update({r.lang: r.to_dict() for r in res})
    finally:
        engine.close()
    return out


class _TimedSession:
    """A session whose run_with_iobinding calls are timed (seconds, in `.runs`)."""

    def __init__(self, session):
        self._s, self.runs = session, []

    def __getattr__(self, name):
        return getattr(self._s, name)

    def run_with_iobinding(self, binding, run_options=None):
        t0 = time.perf_counter()
        self._s.run_with_iobinding(binding, run_options)
        self.runs.append(time.perf_counter() - t0)


def _greedy_decode(runner, ids: list[int], warmup: int, n: int) -> list[float]:
    """Seconds per greedy step (prompt and `warmup` steps first, not counted)."""
    import numpy as np

    cache = runner.new_cache(1, capacity=len(ids) + warmup + n + 1)
    logits, cache = runner.forward(np.array([ids]), cache)
    tok, steps = int(logits[0, -1].argmax()), []
    for i in range(warmup + n):
        t0 = time.perf_counter()
        logits, cache = runner.forward(np.array([[tok]]), cache)
        tok = int(logits[0, -1].argmax())
        steps.append(time.perf_counter() - t0)
    return steps[warmup:]


def decode_profile(path: str, n_tokens: int = 64, threads: int | None = None,
                   prompt_lang: str = "en", warmup: int = 4) -> dict:
    """Where a decoded token's time goes in the onnxruntime engine's decode path (OnnxCausalLM
    with its KV cache bound in place): after a 32-token prompt and `warmup` steps, the mean
    over `n_tokens` greedy steps of
      kernels                      the graph's kernels, by operator (kernel_ms_by_op)
      onnxruntime_outside_kernels  the session run minus its kernels (scheduling, allocation)
      python_outside_session       the step minus the session run (binding, logits copy, argmax)
    which add up to step_ms. Two passes in this process: one plain (step and session-run
    times), one under onnxruntime's profiler (kernel times; the profiler's own bookkeeping
    slows the steps of that pass, not the kernels it times)."""
    import tempfile

    from babel_edge.exporters.onnx import OnnxCausalLM
    from babel_edge.exporters.onnx.graph import ONNX_FILE, weight_bytes_per_token

    from .engines import open_engine

    engine = open_engine(path, "onnxruntime", n_ctx=64, threads=threads)
    ids = prompt_ids(engine, 32, prompt_lang)
    engine.close()
    runner = OnnxCausalLM(path, threads=threads)
    runner.session = timed = _TimedSession(runner.session)
    steps = _greedy_decode(runner, ids, warmup, n_tokens)
    runs = timed.runs[-n_tokens:]
    del runner, timed
    with tempfile.TemporaryDirectory() as tmp:
        runner = OnnxCausalLM(path, threads=threads, profile_prefix=str(Path(tmp) / "decode"))
        _greedy_decode(runner, ids, warmup, n_tokens)
        events = json.loads(Path(runner.session.end_profiling()).read_text())
    profiled = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"][-n_tokens:]
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    by_op: dict[str, float] = {}
    for r in profiled:
        lo, hi = r["ts"], r["ts"] + r["dur"]
        for k in kernels:
            if lo <= k["ts"] <= hi:
                op = k.get("args", {}).get("op_name", "?")
                by_op[op] = by_op.get(op, 0.0) + k["dur"] / 1000 / n_tokens
    step_ms = 1000 * sum(steps) / n_tokens
    run_ms = 1000 * sum(runs) / n_tokens
    kernel_ms = sum(by_op.values())
    wbytes = weight_bytes_per_token(Path(path) / ONNX_FILE)
    matmul_ms = sum(v for k, v in by_op.items() if k in ("MatMulNBits", "MatMul"))
    return {"path": str(path), "tokens": n_tokens, "threads": threads or os.cpu_count(),
            "step_ms": step_ms, "tokens_per_s": 1000 / step_ms,
            "step_ms_parts": {"kernels": kernel_ms, "onnxruntime_outside_kernels": run_ms - kernel_ms,
                              "python_outside_session": step_ms - run_ms},
            "kernel_ms_by_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1])),
            "profiled_step_run_ms": sum(r["dur"] for r in profiled) / 1000 / n_tokens,
            "weight_bytes_per_token": wbytes,
            # the weight MatMuls read (nearly) all of those bytes: their effective read rate
            "weight_matmul_gb_s": wbytes / 1e9 / (matmul_ms / 1000) if matmul_ms else None}


def run_worker(kind: str, subject: Subject, device: str, threads: int | None, extra: dict) -> dict:
    """Run one measurement in a fresh process and return its JSON. A subject with its own
    environment (other code on PYTHONPATH) runs from the temporary directory, so that `-m`
    does not find a babel_edge package in the current directory first."""
    path = str(Path(subject.path).resolve()) if Path(subject.path).exists() else subject.path
    cmd = [sys.executable, "-m", "babel_edge.runtime.bench", "--worker", kind,
           "--path", path, "--backend", subject.backend,
           "--device", device, "--extra", json.dumps(extra)]
    if threads:
        cmd += ["--threads", str(threads)]
    env = dict(os.environ, BABEL_EDGE_QUIET="1", **(subject.env or {}))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env,
                       cwd=tempfile.gettempdir() if subject.env else None)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"benchmark worker for {subject.label} ({subject.engine}) failed: {tail}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def run_bench(subjects: Sequence[Subject], device: str = "cpu", rounds: int = 3,
              threads: int | None = None, ppl_langs: Sequence[str] = (),
              ppl_bytes: int | None = None, progress=None, targets: Sequence[str] = ()) -> dict:
    """Measure every subject, alternating round by round; with `ppl_langs`, bits per byte on
    the unseen domain of `targets` (row["ppl"]) and in-domain (row["ppl_eval"]). Returns the
    results dict."""
    from babel_edge.evaluate import DEFAULT_MAX_BYTES

    ppl_bytes = ppl_bytes or DEFAULT_MAX_BYTES
    speed: dict[str, list[dict]] = {s.key: [] for s in subjects}
    steps = rounds * len(subjects) + (len(subjects) if ppl_langs else 0)
    done = 0
    for r in range(rounds):
        order = list(subjects) if r % 2 == 0 else list(reversed(subjects))
        for s in order:
            speed[s.key].append(run_worker("speed", s, device, threads, {}))
            done += 1
            if progress:
                progress(done, steps, f"round {r + 1}/{rounds}: {s.label} ({s.engine})")
    results, unseen_domain = [], None
    for s in subjects:
        runs = speed[s.key]
        row = {"label": s.label, "backend": s.engine, "path": s.path, "device": device,
               "file_bytes": artefact_bytes(s.path),
               "weight_bytes_per_token": runs[0]["weight_bytes_per_token"], "rounds": runs}
        for key in ["load_s", "peak_rss_mb", "decode_tok_s"] + [f"prefill{n}_tok_s" for n in PREFILL_LENGTHS]:
            row[key] = _stats([x[key] for x in runs])
        if ppl_langs:
            m = run_worker("ppl", s, device, threads, {"langs": list(ppl_langs),
                                                       "max_bytes": ppl_bytes,
                                                       "targets": list(targets)})
            # "ppl": the headline set (the unseen domain where there is one); "ppl_eval": in-domain
            first = "unseen" if "unseen" in m["sets"] else "eval"
            row["ppl"], row["ppl_text"] = m["sets"][first], first
            if first == "unseen":
                row["ppl_eval"] = m["sets"].get("eval", {})
            unseen_domain = m["unseen_domain"]
            done += 1
            if progress:
                progress(done, steps, f"perplexity: {s.label} ({s.engine})")
        results.append(row)
    return {"device": device, "rounds": rounds, "threads": threads or os.cpu_count(),
            "unseen_domain": unseen_domain, "results": results, "comparisons": compare_rows(results)}


def compare_rows(results: list[dict]) -> list[dict]:
    """Per back end: every non-first subject against the first (the baseline, e.g. dense)."""
    out = []
    by_backend: dict[str, list[dict]] = {}
    for r in results:
        by_backend.setdefault(r["backend"], []).append(r)
    for backend, rows in by_backend.items():
        base = rows[0]
        for r in rows[1:]:
            measured = r["decode_tok_s"]["median"] / base["decode_tok_s"]["median"]
            ideal = base["weight_bytes_per_token"] / r["weight_bytes_per_token"]
            out.append({"backend": backend, "baseline": base["label"], "subject": r["label"],
                        "size_ratio": r["file_bytes"] / base["file_bytes"],
                        "decode_speedup": measured, "ideal_decode_speedup": ideal,
                        "speedup_vs_ideal": measured / ideal,
                        "prefill512_speedup": r["prefill512_tok_s"]["median"]
                        / base["prefill512_tok_s"]["median"]})
    return out


def markdown(res: dict, target_langs: Sequence[str] = ()) -> str:
    rows = res["results"]
    fmt = lambda s: f"{s['median']:.1f} ({s['min']:.1f}–{s['max']:.1f})"  # noqa: E731
    lines = [f"Device: {res['device']}, threads: {res['threads']}, rounds: {res['rounds']} "
             f"(median, min–max)", "",
             "| model | engine | file MB | weights read/token MB | load s | peak RSS MB "
             "| prefill 128 tok/s | prefill 512 tok/s | decode tok/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['backend']} | {r['file_bytes'] / 1e6:.1f} | "
                     f"{r['weight_bytes_per_token'] / 1e6:.1f} | {r['load_s']['median']:.2f} | "
                     f"{r['peak_rss_mb']['median']:.0f} | {fmt(r['prefill128_tok_s'])} | "
                     f"{fmt(r['prefill512_tok_s'])} | {fmt(r['decode_tok_s'])} |")
    if res["comparisons"]:
        lines += ["", "| engine | subject vs baseline | size ratio | decode speedup | ideal (bytes) "
                      "| measured / ideal | prefill 512 speedup |", "|---|---|---:|---:|---:|---:|---:|"]
        for c in res["comparisons"]:
            lines.append(f"| {c['backend']} | {c['subject']} vs {c['baseline']} | {c['size_ratio']:.3f} | "
                         f"{c['decode_speedup']:.3f} | {c['ideal_decode_speedup']:.3f} | "
                         f"{c['speedup_vs_ideal']:.2f} | {c['prefill512_speedup']:.3f} |")
    if any("ppl" in r for r in rows):
        langs = list(rows[0].get("ppl", {}))
        marked = lambda l: f"**{l}**" if l in target_langs else l  # noqa: E731

        def table(title: str, key: str, cell) -> list[str]:
            have = [r for r in rows if r.get(key)]
            ls = [l for l in langs if all(l in r[key] for r in have)]
            if not have or not ls:
                return []
            return (["", title, "", "| model | engine | " + " | ".join(map(marked, ls)) + " |",
                     "|---|---|" + "---:|" * len(ls)] +
                    [f"| {r['label']} | {r['backend']} | " + " | ".join(cell(r[key][l]) for l in ls)
                     + " |" for r in have])

        # bits per byte compare across tokenizers (a trimmed vocabulary against the dense one):
        # every artefact scores the same bytes (babel_edge.evaluate)
        tgt = f" (targets: {', '.join(target_langs)})" if target_langs else ""
        bpb = lambda x: f"{x['bits_per_byte']:.3f}"  # noqa: E731
        if rows[0].get("ppl_text") == "unseen":
            lines += table(f"Bits per byte on unseen-domain text ('{res.get('unseen_domain')}', held "
                           f"out of profiling, calibration, vocabulary choice and healing; same "
                           f"bytes for every model){tgt}", "ppl", bpb)
            lines += table("Bits per byte on the in-domain eval split (the domains the model was "
                           "fitted to; beside the unseen figure, never alone)", "ppl_eval", bpb)
        else:
            lines += table(f"Bits per byte on the eval split, same bytes for every model{tgt}",
                           "ppl", bpb)
        lines += table("Perplexity per token (same text as the first table)", "ppl",
                       lambda x: f"{x['ppl']:.1f}")
        lines += different_tokenizers_note(rows, langs)
    return "\n".join(lines) + "\n"


def different_tokenizers_note(rows: list[dict], langs: Sequence[str]) -> list[str]:
    """A warning line when the artefacts split the same text into different token counts (their
    per-token perplexities then do not compare)."""
    tokens = {l: {r["ppl"][l]["n_tokens"] for r in rows if "ppl" in r} for l in langs}
    differ = [l for l in langs if len(tokens[l]) > 1]
    if not differ:
        return []
    return ["", f"Per-token perplexities of models whose tokenizers split the same text "
                f"differently ({', '.join(differ)}) do not compare: read bits per byte."]


def write_results(res: dict, out: Path, targets: Sequence[str] = ()) -> list[Path]:
    """bench.json, bench.md and bench.png in `out` (each written atomically)."""
    from babel_edge.io import write_json, write_text

    out.mkdir(parents=True, exist_ok=True)
    paths = [write_json(out / "bench.json", res), write_text(out / "bench.md", markdown(res, targets)),
             out / "bench.png"]
    chart(res, out / "bench.png")
    return paths


def chart(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["results"]
    labels = [f"{r['label']}\n{r['backend']}" for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, key, title in zip(axes, ["file_bytes", "prefill512_tok_s", "decode_tok_s"],
                              ["file size (MB)", "prefill 512 (tok/s)", "decode (tok/s)"]):
        vals = [r[key] / 1e6 if key == "file_bytes" else r[key]["median"] for r in rows]
        ax.bar(range(len(rows)), vals, color=["#888" if i % 2 == 0 else "#2a7" for i in range(len(rows))])
        if key != "file_bytes":
            lo = [r[key]["median"] - r[key]["min"] for r in rows]
            hi = [r[key]["max"] - r[key]["median"] for r in rows]
            ax.errorbar(range(len(rows)), vals, yerr=[lo, hi], fmt="none", ecolor="k", capsize=3)
        ax.set_xticks(range(len(rows)), labels, fontsize=8)
        ax.set_title(title)
    fig.suptitle(f"babel-edge bench — {res['device']}, {res['threads']} threads, "
                 f"{res['rounds']} rounds (median, min–max)")
    fig.tight_layout()
    from babel_edge.io import atomic_file

    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _main_worker(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--worker", choices=["speed", "ppl", "profile"], required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--backend", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int)
    p.add_argument("--extra", default="{}")
    a = p.parse_args(argv)
    extra = json.loads(a.extra)
    if a.worker == "speed":
        res = measure_speed(a.path, a.backend, a.device, a.threads)
    elif a.worker == "profile":
        res = decode_profile(a.path, extra.get("tokens", 64), a.threads)
    else:
        res = measure_ppl(a.path, a.backend, a.device, extra["langs"], extra["max_bytes"],
                          extra.get("targets", ()))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(_main_worker(sys.argv[1:]))

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
    backend: str          # torch | llama.cpp | onnxruntime


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


def measure_ppl(path: str, backend: str, device: str, langs: Sequence[str], max_bytes: int) -> dict:
    """Bits per byte and perplexity per language on the eval split (babel_edge.evaluate: the
    same bytes for every artefact, whatever its tokenizer)."""
    from babel_edge.corpus import load_corpus
    from babel_edge.evaluate import DEFAULT_MAX_LEN, evaluate_languages

    from .engines import open_engine

    engine = open_engine(path, backend, device, n_ctx=DEFAULT_MAX_LEN + 16)
    corpus = load_corpus()
    try:
        res = evaluate_languages(langs, lambda l: corpus.texts(l, "eval"), engine.tokenize,
                                 engine.score, max_bytes=max_bytes, batch_size=4,
                                 label=f"bits per byte {Path(path).name}")
    finally:
        engine.close()
    return {r.lang: r.to_dict() for r in res}


def _worker(kind: str, subject: Subject, device: str, threads: int | None, extra: dict) -> dict:
    """Run one measurement in a fresh process and return its JSON."""
    cmd = [sys.executable, "-m", "babel_edge.runtime.bench", "--worker", kind, "--path", subject.path,
           "--backend", subject.backend, "--device", device, "--extra", json.dumps(extra)]
    if threads:
        cmd += ["--threads", str(threads)]
    env = dict(os.environ, BABEL_EDGE_QUIET="1")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"benchmark worker for {subject.label} ({subject.backend}) failed: {tail}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def run_bench(subjects: Sequence[Subject], device: str = "cpu", rounds: int = 3,
              threads: int | None = None, ppl_langs: Sequence[str] = (),
              ppl_bytes: int | None = None, progress=None) -> dict:
    """Measure every subject, alternating round by round. Returns the results dict."""
    from babel_edge.evaluate import DEFAULT_MAX_BYTES

    ppl_bytes = ppl_bytes or DEFAULT_MAX_BYTES
    speed: dict[str, list[dict]] = {s.label + "|" + s.backend: [] for s in subjects}
    steps = rounds * len(subjects) + (len(subjects) if ppl_langs else 0)
    done = 0
    for r in range(rounds):
        order = list(subjects) if r % 2 == 0 else list(reversed(subjects))
        for s in order:
            speed[s.label + "|" + s.backend].append(_worker("speed", s, device, threads, {}))
            done += 1
            if progress:
                progress(done, steps, f"round {r + 1}/{rounds}: {s.label} ({s.backend})")
    results = []
    for s in subjects:
        runs = speed[s.label + "|" + s.backend]
        row = {"label": s.label, "backend": s.backend, "path": s.path, "device": device,
               "file_bytes": artefact_bytes(s.path),
               "weight_bytes_per_token": runs[0]["weight_bytes_per_token"], "rounds": runs}
        for key in ["load_s", "peak_rss_mb", "decode_tok_s"] + [f"prefill{n}_tok_s" for n in PREFILL_LENGTHS]:
            row[key] = _stats([x[key] for x in runs])
        if ppl_langs:
            row["ppl"] = _worker("ppl", s, device, threads, {"langs": list(ppl_langs),
                                                            "max_bytes": ppl_bytes})
            done += 1
            if progress:
                progress(done, steps, f"perplexity: {s.label} ({s.backend})")
        results.append(row)
    return {"device": device, "rounds": rounds, "threads": threads or os.cpu_count(),
            "results": results, "comparisons": compare_rows(results)}


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
        def table(title: str, cell) -> list[str]:
            return (["", title, "", "| model | engine | " + " | ".join(
                        (f"**{l}**" if l in target_langs else l) for l in langs) + " |",
                     "|---|---|" + "---:|" * len(langs)] +
                    [f"| {r['label']} | {r['backend']} | " + " | ".join(cell(r["ppl"][l]) for l in langs)
                     + " |" for r in rows if "ppl" in r])

        # bits per byte compare across tokenizers (a trimmed vocabulary against the dense one):
        # every artefact scores the same bytes (babel_edge.evaluate)
        lines += table("Bits per byte on the eval split, same bytes for every model"
                       + (f" (targets: {', '.join(target_langs)})" if target_langs else ""),
                       lambda x: f"{x['bits_per_byte']:.3f}")
        lines += table("Perplexity per token", lambda x: f"{x['ppl']:.1f}")
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
    p.add_argument("--worker", choices=["speed", "ppl"], required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--backend", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int)
    p.add_argument("--extra", default="{}")
    a = p.parse_args(argv)
    extra = json.loads(a.extra)
    if a.worker == "speed":
        res = measure_speed(a.path, a.backend, a.device, a.threads)
    else:
        res = measure_ppl(a.path, a.backend, a.device, extra["langs"], extra["max_bytes"])
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(_main_worker(sys.argv[1:]))

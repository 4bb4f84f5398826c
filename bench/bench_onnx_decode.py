"""ONNX decode on the `make demo` artefacts: both ONNX engines (onnxruntime with its KV cache
bound in place, onnxruntime-genai) next to llama.cpp, dense against pruned + trimmed.

    .venv/bin/python bench/bench_onnx_decode.py [--build babel-edge-build] [--rounds 5]
        [--threads N] [--tokens 64] [--out bench/results] [--baseline OLD_CHECKOUT]

`--build` is the output of `babel-edge build --langs en,de,fr --rate 0.5 --trim-vocab`
(dense.q8_0.gguf, pruned.q8_0.gguf, onnx-dense-int8/, onnx-pruned-int8/). Three parts:
  1. greedy text: the same prompts through PyTorch (fp32, the model the exports came from),
     llama.cpp, onnxruntime-genai and onnxruntime (each artefact's own tokenizer; 32 new
     tokens); per engine, whether its text equals llama.cpp's, and how many leading tokens
     agree with llama.cpp's and with PyTorch's (8-bit weights in both runtimes: a near-tie
     can flip, and the continuation goes its own way from there);
  2. speed: babel_edge.runtime.bench.run_bench over the six (model, engine) pairs, alternating
     round by round, each run in a fresh process; per engine the measured decode speedup
     pruned / dense against the ideal one (weight bytes read per token, dense / pruned);
  3. where the time goes: babel_edge.runtime.bench.decode_profile of the onnxruntime engine,
     dense and pruned, each in a fresh process (onnxruntime's profiler, `--tokens` steps).
With `--baseline DIR` (a source checkout of an earlier babel-edge, e.g. `git worktree add
/tmp/old 2e41b4a`), that code exports the same dense and pruned models to int8 ONNX (kept in
`<build>/baseline-<name>/`) and its onnxruntime engine runs them in the same alternating
rounds: before and after on one machine in one run.
Writes onnx_decode.json and onnx_decode.md to `--out`. Run it alone on the machine (timings).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PROMPTS = {"en": "The capital of France is", "de": "Die Hauptstadt von Deutschland ist",
           "fr": "La capitale de l'Italie est", "count": "1, 2, 3, 4,"}
ENGINES = ("llama.cpp", "onnxruntime-genai", "onnxruntime")
REFERENCE = "torch"
N_TEXT = 32


def artefacts(build: Path) -> dict[tuple[str, str], str]:
    """{(label, engine): path} of a build directory."""
    from babel_edge.errors import UserError

    out = {}
    for label in ("dense", "pruned"):
        gguf = next(iter(sorted(build.glob(f"{label}.*.gguf"))), None)
        onnx = next(iter(sorted(build.glob(f"onnx-{label}-*"))), None)
        if gguf is None or onnx is None:
            raise UserError(f"'{build}' has no {label} GGUF and ONNX export; run "
                            f"babel-edge build --langs en,de,fr --rate 0.5 --trim-vocab first")
        out[(label, "llama.cpp")] = str(gguf)
        for engine in ("onnxruntime", "onnxruntime-genai"):
            out[(label, engine)] = str(onnx)
    return out


def greedy_texts(paths: dict, threads: int | None) -> dict:
    """{"texts": {label: {prompt: {engine: text}}}, "tokens": ..., "equal_to_llama_cpp":
    {label: {engine: bool}}, "agree": {label: {prompt: {engine: {"llama.cpp": n, "torch": n}}}}}
    with n the leading new tokens equal to that engine's."""
    from babel_edge.runtime.engines import open_engine

    texts: dict = {}
    tokens: dict = {}
    runs = [((label, REFERENCE), source) for label, source in sources(paths).items()]
    for (label, engine), path in runs + sorted(paths.items()):
        eng = open_engine(path, engine, n_ctx=256, threads=threads)
        for key, prompt in PROMPTS.items():
            new = list(eng.generate(eng.tokenize(prompt), N_TEXT, temperature=0.0))
            tokens.setdefault(label, {}).setdefault(key, {})[engine] = new
            texts.setdefault(label, {}).setdefault(key, {})[engine] = eng.detokenize(new)
        eng.close()

    def lead(a, b):
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n

    agree = {label: {key: {e: {ref: lead(t[e], t[ref]) for ref in ("llama.cpp", REFERENCE)}
                           for e in ENGINES + (REFERENCE,)}
                     for key, t in by_prompt.items()} for label, by_prompt in tokens.items()}
    same = {label: {e: all(t[e] == t["llama.cpp"] for t in by_prompt.values()) for e in ENGINES[1:]}
            for label, by_prompt in texts.items()}
    return {"texts": texts, "tokens": tokens, "equal_to_llama_cpp": same, "agree": agree}


def sources(paths: dict) -> dict[str, str]:
    """{label: the model directory its ONNX export came from} (export_summary.json)."""
    from babel_edge.exporters.onnx import SUMMARY_FILE

    return {label: json.loads((Path(p) / SUMMARY_FILE).read_text())["source"]
            for (label, engine), p in paths.items() if engine == "onnxruntime"}


def baseline_subjects(code: Path, build: Path, paths: dict, work: Path) -> list:
    """Subjects for an earlier babel-edge checkout's onnxruntime engine on its own int8 exports
    of the same models (exported here once, with that code)."""
    import os
    import subprocess

    from babel_edge.runtime.bench import Subject

    name = code.resolve().name
    tree = work / f"import-{name}" / "babel_edge"          # the package layout pip would install
    if not tree.exists():
        tree.mkdir(parents=True)
        for child in (code / "babel_edge").iterdir():
            (tree / child.name).symlink_to(child.resolve())
        for sub in ("exporters", "runtime", "tui"):
            (tree / sub).symlink_to((code / sub).resolve())
    env = {"PYTHONPATH": str(tree.parent)}
    out = []
    for label, src in sources(paths).items():
        onnx = build / f"baseline-{name}" / f"onnx-{label}-int8"
        if not (onnx / "model.onnx").exists():
            print(f"  exporting {label} with {code} …", flush=True)
            subprocess.run([sys.executable, "-m", "babel_edge.cli", "export", "--model", src,
                            "--format", "onnx", "--quant", "int8", "--out", str(onnx), "--force"],
                           check=True, cwd=work, env=dict(os.environ, **env, BABEL_EDGE_QUIET="1"))
        out.append(Subject(label, str(onnx), "onnxruntime", variant=f"baseline {name}", env=env))
    return out


def markdown(res: dict, argv: list[str]) -> str:
    from babel_edge.runtime.bench import markdown as bench_markdown

    lines = ["# ONNX decode on the make-demo artefacts: onnxruntime, onnxruntime-genai, llama.cpp",
             "", "```", "python bench/bench_onnx_decode.py " + " ".join(argv), "```", "",
             f"Artefacts: `{res['build']}` (`babel-edge build --langs en,de,fr --rate 0.5 "
             f"--trim-vocab`: q8_0 GGUF, int8 ONNX; pruned = FFN 0.5 + trimmed vocabulary).", "",
             "## Decode speed", "", bench_markdown(res["speed"]), "",
             "## Where a decoded token's time goes (onnxruntime engine, onnxruntime's profiler)", ""]
    for label, p in res["profile"].items():
        parts = p["step_ms_parts"]
        lines += [f"**{label}** — {p['step_ms']:.2f} ms per token ({p['tokens_per_s']:.1f} tok/s; "
                  f"mean of {p['tokens']} greedy steps, {p['threads']} threads; kernel times from a "
                  f"second pass under onnxruntime's profiler); weights read per token "
                  f"{p['weight_bytes_per_token'] / 1e6:.1f} MB, read by the weight MatMuls at "
                  f"{p['weight_matmul_gb_s']:.1f} GB/s", "",
                  "| part | ms per token | share |", "|---|---:|---:|"]
        for k, v in parts.items():
            lines.append(f"| {k.replace('_', ' ')} | {v:.3f} | {v / p['step_ms']:.1%} |")
        for op, v in p["kernel_ms_by_op"].items():
            lines.append(f"| kernel: {op} | {v:.3f} | {v / p['step_ms']:.1%} |")
        lines.append("")
    lines += [f"## Greedy text ({N_TEXT} new tokens)", "",
              "Leading new tokens equal to llama.cpp's / to PyTorch fp32's, then the texts.", ""]
    cols = (REFERENCE,) + ENGINES
    for label, by_prompt in res["greedy"]["texts"].items():
        eq = res["greedy"]["equal_to_llama_cpp"][label]
        agree = res["greedy"]["agree"][label]
        lines += [f"**{label}** — text equal to llama.cpp's on every prompt: "
                  + ", ".join(f"{e} {'yes' if v else 'no'}" for e, v in eq.items()), "",
                  "| prompt | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
        for key in by_prompt:
            lines.append(f"| {key} | " + " | ".join(
                f"{agree[key][e]['llama.cpp']} / {agree[key][e][REFERENCE]}" for e in cols) + " |")
        lines += ["", "| prompt | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for key, t in by_prompt.items():
            cell = lambda s: json.dumps(s, ensure_ascii=False)[1:-1].replace("|", "\\|")  # noqa: E731
            lines.append(f"| {key} | " + " | ".join(cell(t[e]) for e in cols) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    from babel_edge.io import write_json, write_text
    from babel_edge.runtime.bench import Subject, run_bench, run_worker

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="babel-edge-build")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tokens", type=int, default=64, help="profiled decode steps (default 64)")
    ap.add_argument("--out", default=str(ROOT / "results"))
    ap.add_argument("--baseline", help="source checkout of an earlier babel-edge to measure too")
    a = ap.parse_args(argv)
    build = Path(a.build).resolve()
    paths = artefacts(build)
    res: dict = {"build": str(build)}
    print("greedy text …", flush=True)
    res["greedy"] = greedy_texts(paths, a.threads)
    # dense first within each engine: compare_rows takes it as the baseline
    subjects = [Subject(label, paths[(label, e)], e) for e in ENGINES for label in ("dense", "pruned")]
    if a.baseline:
        work = Path(tempfile.gettempdir()) / "babel-edge-bench-baseline"
        work.mkdir(exist_ok=True)
        subjects += baseline_subjects(Path(a.baseline), build, paths, work)
    print("speed …", flush=True)
    res["speed"] = run_bench(subjects, "cpu", a.rounds, a.threads,
                             progress=lambda d, t, what: print(f"  {d}/{t} {what}", flush=True))
    print("profile …", flush=True)
    res["profile"] = {label: run_worker("profile", Subject(label, paths[(label, "onnxruntime")],
                                                        "onnxruntime"), "cpu", a.threads,
                                     {"tokens": a.tokens})
                      for label in ("dense", "pruned")}
    out = Path(a.out)
    md = markdown(res, argv)
    write_json(out / "onnx_decode.json", res)
    write_text(out / "onnx_decode.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

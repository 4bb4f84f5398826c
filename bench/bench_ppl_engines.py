"""Per-language perplexity of the embedded model in PyTorch (fp32 reference) and in
llama.cpp (the embedded Q4_K_M GGUF itself), on the corpus's evaluation split.

    .venv/bin/python bench/bench_ppl_engines.py [--langs en,de,fr,zh,ar,ru] [--max-tokens 1024]

Runs `babel-edge ppl` once per engine (the same code path users run) and prints
both tables side by side with the relative difference; writes
bench/results/ppl_engines.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def run(engine: str, langs: str, max_tokens: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "ppl.json"
        subprocess.run([sys.executable, "-m", "babel_edge.cli", "ppl", "--engine", engine,
                        "--langs", langs, "--max-tokens", str(max_tokens), "--json", str(out)],
                       check=True)
        return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--langs", default="en,de,fr,zh,ar,ru")
    ap.add_argument("--max-tokens", type=int, default=1024)
    a = ap.parse_args()
    got = {e: {r["lang"]: r for r in run(e, a.langs, a.max_tokens)["results"]}
           for e in ("torch", "llama.cpp")}
    rows = ["| lang | tokens (torch / llama.cpp) | ppl torch fp32 | ppl llama.cpp Q4_K_M | Δ |",
            "|---|---|---|---|---|"]
    for lang, t in got["torch"].items():
        l = got["llama.cpp"][lang]
        rows.append(f"| {lang} | {t['n_tokens']} / {l['n_tokens']} | {t['ppl']:.2f} | {l['ppl']:.2f} "
                    f"| {l['ppl'] / t['ppl'] - 1:+.1%} |")
    md = "\n".join(rows)
    print(md)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ppl_engines.md").write_text(
        "# Embedded Gemma 3 270M: perplexity in PyTorch vs llama.cpp\n\n"
        f"Eval split, up to {a.max_tokens} predicted tokens per language, "
        "`bench/bench_ppl_engines.py`.\n\n" + md + "\n")
    (RESULTS / "ppl_engines.json").write_text(json.dumps(got, indent=1) + "\n")


if __name__ == "__main__":
    main()

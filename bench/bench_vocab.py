"""Vocabulary trimming on the embedded Gemma 3 270M (issue 6): the done-when figures.

Three GGUF files at one precision (default q8_0), made here from the same model:
  dense            the embedded model as it is
  pruned           FFN pruned at --rate for --langs (`babel-edge prune`: mass, adaptive,
                   compensation on; the benchmark's cached 14-language profile)
  pruned+trimmed   the same, plus --trim-vocab (babel_edge.vocab)
and one ONNX export (--onnx, default int8) of pruned+trimmed. Reported:
  * kept vocabulary size and why each token was kept; eval-split tokenization of the
    targets and of --others (share of paragraphs tokenized as before, kept-token
    share, tokens per byte), from the trimmed model's pruning_plan.json
  * file sizes, and the trimmed file's share of the dense one (goal <= 40%)
  * per-byte perplexity, exp(total NLL / UTF-8 bytes), on the same eval paragraphs for
    every model (whole paragraphs, each at most 512 tokens under every tokenizer), in
    llama.cpp on the GGUFs and in PyTorch (fp32) for pruned vs pruned+trimmed;
    goal: trimmed within 10% of pruned on the targets
  * decode tokens/s in llama.cpp, the three files measured alternately in one run
    (runtime.bench: fresh process per round, 128 greedy tokens after a 32-token prompt)
  * greedy samples in the target languages from llama.cpp and from onnxruntime.

    python bench/bench_vocab.py [--rate 0.5] [--langs en,de,fr] [--rounds 3] [--work DIR]

Artefacts go to --work (default: the cache's bench/vocab folder) and are reused by a
rerun unless --fresh; results to bench/results/vocab_gemma3_270m.{json,md}. The
machine these numbers come from is a shared 2-core box: speed figures are noisy.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

from common import log

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "vocab_gemma3_270m"
PROMPTS = {"en": "The capital of France is", "de": "Die Hauptstadt von Deutschland ist",
           "fr": "La capitale de la France est", "es": "La capital de España es",
           "ru": "Столица России —", "zh": "中国的首都是"}
MAX_SEQ = 512                         # tokens per scored paragraph (llama.cpp engine's n_batch)




def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ------------------------------------------------------------------ artefacts

def make_models(args, work: Path) -> dict[str, Path]:
    """Pruned and pruned+trimmed directories (prune() is what `babel-edge prune` runs)."""
    from babel_edge.corpus import load_corpus
    from babel_edge.models import load_model
    from babel_edge.prune import PruneOptions, prune

    sys.path.insert(0, str(ROOT))
    from bench_prune import get_profile

    lm = load_model(None)
    prof = get_profile(lm, load_corpus())
    del lm
    out = {}
    for label, trim in (("pruned", False), ("trimmed", True)):
        d = work / label
        if (d / "pruning_plan.json").exists() and not args.fresh:
            log(f"reusing {d}")
        else:
            t = time.perf_counter()
            log(f"pruning ({label})")
            prune(None, prof.path, args.langs, args.rate, d, options=PruneOptions(schedule="adaptive", trim_vocab=trim),
                  other_langs=args.others)
            log(f"  {label}: {time.perf_counter() - t:.0f} s")
        out[label] = d
    return out


def export_all(args, dirs: dict[str, Path], work: Path) -> dict[str, dict]:
    from babel_edge.exporters.gguf import export_gguf, summary_path

    sources = {"dense": None, "pruned": dirs["pruned"], "pruned+trimmed": dirs["trimmed"]}
    out = {}
    for label, src in sources.items():
        p = work / f"{label.replace('+', '-')}.{args.quant}.gguf"
        if p.exists() and summary_path(p).exists() and not args.fresh:
            log(f"reusing {p}")
            out[label] = json.loads(summary_path(p).read_text())
            continue
        log(f"exporting {label} to {args.quant} GGUF")
        t = time.perf_counter()
        out[label] = export_gguf(src, p, args.quant, force=True, verbose=False)
        log(f"  {label}: {out[label]['file_bytes'] / 1e6:.1f} MB, {time.perf_counter() - t:.0f} s")
    return out


def export_onnx_trimmed(args, dirs: dict[str, Path], work: Path) -> dict | None:
    if args.onnx == "none":
        return None
    from babel_edge.exporters.onnx import SUMMARY_FILE, export_onnx

    p = work / f"onnx-trimmed-{args.onnx}"
    if (p / SUMMARY_FILE).exists() and not args.fresh:
        log(f"reusing {p}")
        return json.loads((p / SUMMARY_FILE).read_text())
    log(f"exporting pruned+trimmed to ONNX {args.onnx}")
    return export_onnx(str(dirs["trimmed"]), p, args.onnx, force=True, verbose=False)


# ------------------------------------------------------------------ measurements

def paragraph_sets(corpus, langs, tokenizers, budget_bytes: int) -> dict[str, list[str]]:
    """Per language: eval paragraphs in corpus order until `budget_bytes`, skipping any that
    some tokenizer turns into more than MAX_SEQ tokens (so no model scores a cut text)."""
    out = {}
    for lang in langs:
        chosen, n = [], 0
        for text in corpus.texts(lang, "eval"):
            if all(len(tok(text)) <= MAX_SEQ for tok in tokenizers):
                chosen.append(text)
                n += len(text.encode())
                if n >= budget_bytes:
                    break
        out[lang] = chosen
    return out


def per_byte(tokenize, score, texts) -> dict:
    seqs = [tokenize(t) for t in texts]
    nll = 0.0
    for s in range(0, len(seqs), 4):
        nll += sum(score(seqs[s:s + 4]))
    n_bytes = sum(len(t.encode()) for t in texts)
    n_tok = sum(len(s) - 1 for s in seqs)
    return {"paragraphs": len(texts), "bytes": n_bytes, "tokens": n_tok, "nll": nll,
            "ppl_per_byte": math.exp(nll / n_bytes), "bits_per_byte": nll / math.log(2) / n_bytes,
            "ppl_per_token": math.exp(nll / max(n_tok, 1))}


def llama_measure(ggufs: dict[str, Path], paras: dict[str, list[str]], threads: int) -> tuple[dict, dict]:
    """Per-byte perplexity and greedy samples of each GGUF in llama.cpp."""
    from babel_edge.runtime.engines import LlamaCppEngine

    ppl, samples = {}, {}
    for label, path in ggufs.items():
        log(f"llama.cpp perplexity: {label}")
        eng = LlamaCppEngine(path, n_ctx=1024, n_threads=threads)
        try:
            ppl[label] = {l: per_byte(eng.tokenize, eng.score, texts) for l, texts in paras.items()}
            samples[label] = {}
            for lang, prompt in PROMPTS.items():
                ids = list(eng.generate(eng.tokenize(prompt), 24, temperature=0.0))
                samples[label][lang] = prompt + eng.detokenize(ids)
        finally:
            eng.close()
    return ppl, samples


def torch_measure(dirs: dict[str, Path], paras: dict[str, list[str]], threads: int) -> dict:
    """Per-byte perplexity in PyTorch fp32: the trimming's own effect, without quantization."""
    import torch

    from babel_edge.evaluate import hf_tokenize, torch_scorer
    from babel_edge.models import load_model

    torch.set_num_threads(threads)
    out = {}
    for label, d in (("pruned", dirs["pruned"]), ("pruned+trimmed", dirs["trimmed"])):
        log(f"torch perplexity: {label}")
        lm = load_model(str(d))
        tok = hf_tokenize(lm.tokenizer)
        score = torch_scorer(lm.model, pad_id=lm.tokenizer.pad_token_id or 0)
        out[label] = {l: per_byte(tok, score, texts) for l, texts in paras.items()}
        del lm
    return out


def onnx_samples(path: Path, langs) -> dict:
    from transformers import AutoTokenizer

    from babel_edge.exporters.onnx import OnnxCausalLM

    tok = AutoTokenizer.from_pretrained(str(path))
    run = OnnxCausalLM(path, threads=2)
    eos = [tok.eos_token_id] + [i for i in [tok.convert_tokens_to_ids("<end_of_turn>")]
                                if i is not None and i != tok.unk_token_id]
    out = {}
    for lang in langs:
        prompt = PROMPTS[lang]
        ids = tok(prompt)["input_ids"]
        new = run.generate(ids, 24, eos_token_id=eos)
        out[lang] = prompt + tok.decode(new, skip_special_tokens=True)
    return out


def speed(ggufs: dict[str, Path], rounds: int, threads: int | None) -> dict:
    from babel_edge.runtime.bench import Subject, run_bench

    subjects = [Subject(label, str(p), "llama.cpp") for label, p in ggufs.items()]
    return run_bench(subjects, "cpu", rounds, threads, (), progress=lambda d, n, m: log(f"  speed {d}/{n}: {m}"))


# ------------------------------------------------------------------ report

def markdown(res: dict) -> str:
    v = res["vocab"]
    L = [f"# Vocabulary trimming — Gemma 3 270M, FFN rate {res['rate']}, targets "
         f"{', '.join(res['langs'])}", "",
         f"Measured {res['date']} on {res['machine']} (shared 2-core machine: speed figures are noisy; "
         f"the three files were measured alternately in one run, {res['rounds']} rounds, median "
         f"(min–max)).", "",
         f"Kept vocabulary: **{v['kept']:,} of {v['vocab_before']:,}** tokens "
         f"({v['kept_share']:.1%}; {v['tokenizer_kind']}); by reason: "
         + ", ".join(f"{k} {n:,}" for k, n in v["kept_by_reason"].items() if n)
         + f". Chosen from the profile split of the targets ({v['chosen_from']['paragraphs']:,} "
           f"paragraphs, {v['chosen_from']['chars']:,} characters); merges {v['merges_before']:,} → "
           f"{v['merges_after']:,}.", "",
         f"| {res['quant']} GGUF | arch | file MB | share of dense | decode tok/s (llama.cpp) | "
         + " | ".join(f"ppl/byte {l}" for l in res["ppl_langs"]) + " |",
         "|---|---|---:|---:|---:|" + "---:|" * len(res["ppl_langs"])]
    for label, g in res["gguf"].items():
        sp = res["speed"].get(label, {})
        dec = (f"{sp['median']:.1f} ({sp['min']:.1f}–{sp['max']:.1f})" if sp else "–")
        L.append(f"| {label} | {g['architecture']} | {g['file_bytes'] / 1e6:.1f} | "
                 f"{g['file_bytes'] / res['gguf']['dense']['file_bytes']:.1%} | {dec} | "
                 + " | ".join(f"{res['ppl_llama'][label][l]['ppl_per_byte']:.4f}" for l in res["ppl_langs"])
                 + " |")
    L += ["", "Per-byte perplexity = exp(total NLL / UTF-8 bytes) over the same whole eval paragraphs "
          "for every model (targets ~{:,} bytes each, others ~{:,}); it compares different "
          "tokenizations fairly.".format(res["budget_bytes"], res["other_budget_bytes"]), ""]
    if res.get("ppl_torch"):
        L += ["PyTorch fp32, pruned vs pruned+trimmed (the trimming alone):", "",
              "| lang | target | ppl/byte pruned | ppl/byte trimmed | ratio | tokens pruned → trimmed |",
              "|---|---|---:|---:|---:|---:|"]
        for l in res["ppl_langs"]:
            a, b = res["ppl_torch"]["pruned"][l], res["ppl_torch"]["pruned+trimmed"][l]
            L.append(f"| {l} | {'yes' if l in res['langs'] else ''} | {a['ppl_per_byte']:.4f} | "
                     f"{b['ppl_per_byte']:.4f} | {b['ppl_per_byte'] / a['ppl_per_byte']:.3f} | "
                     f"{a['tokens']:,} → {b['tokens']:,} |")
        L.append("")
    L += ["Eval-split tokenization with the trimmed tokenizer (all eval paragraphs; text never "
          "used to choose tokens):", "",
          "| lang | target | paragraphs unchanged | original tokens kept | tokens × | bytes/token "
          "before → after | round-trip failures |", "|---|---|---:|---:|---:|---:|---:|"]
    for l, r in v["eval"].items():
        L.append(f"| {l} | {'yes' if r['target'] else ''} | {r['unchanged_share']:.1%} | "
                 f"{r['token_coverage']:.1%} | {r['tokens_ratio']:.2f} | "
                 f"{r['bytes_per_token_before']:.2f} → {r['bytes_per_token_after']:.2f} | "
                 f"{r['roundtrip_failures']} |")
    g = res["goals"]
    L += ["", "Goals: trimmed+pruned GGUF ≤ 40% of dense: "
          f"**{g['size_share']:.1%}** ({'met' if g['size_met'] else 'missed'}); target per-byte "
          f"perplexity within 10% of the FFN-pruned model (llama.cpp, {res['quant']}): worst ratio "
          f"**{g['worst_target_ppl_ratio']:.3f}** ({'met' if g['ppl_met'] else 'missed'}).", "",
          "Greedy samples (llama.cpp, 24 tokens):", ""]
    for label, s in res["samples_llama"].items():
        for lang, text in s.items():
            L.append(f"- {label} [{lang}]: {text!r}")
    if res.get("samples_onnx"):
        L += ["", f"Greedy samples (onnxruntime, pruned+trimmed ONNX {res['onnx']['precision']}, "
                  f"{res['onnx']['bytes'] / 1e6:.1f} MB):", ""]
        for lang, text in res["samples_onnx"].items():
            L.append(f"- [{lang}]: {text!r}")
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=0.5)
    ap.add_argument("--langs", default="en,de,fr")
    ap.add_argument("--others", default="ru,zh,ar")
    ap.add_argument("--quant", default="q8_0")
    ap.add_argument("--onnx", default="int8", help="ONNX precision of the trimmed export, or none")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget-bytes", type=int, default=8000, help="eval bytes per target language")
    ap.add_argument("--other-budget-bytes", type=int, default=3000, help="eval bytes per other language")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch fp32 perplexities")
    ap.add_argument("--work", help="artefact folder (default: <cache>/bench/vocab)")
    ap.add_argument("--fresh", action="store_true", help="rebuild artefacts that exist")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from babel_edge.corpus import load_corpus
    from babel_edge.models import cache_dir

    torch.set_num_threads(args.threads)
    args.langs = args.langs.split(",")
    args.others = [l for l in args.others.split(",") if l and l not in args.langs]
    work = Path(args.work) if args.work else cache_dir() / "bench" / "vocab"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    dirs = make_models(args, work)
    gg = export_all(args, dirs, work)
    ggufs = {k: Path(v["path"]) for k, v in gg.items()}
    onnx = export_onnx_trimmed(args, dirs, work)

    from babel_edge.runtime.engines import LlamaCppEngine

    corpus = load_corpus()
    engines = [LlamaCppEngine(p, n_ctx=1024, n_threads=1) for p in ggufs.values()]
    try:
        toks = [e.tokenize for e in engines]
        paras = paragraph_sets(corpus, args.langs, toks, args.budget_bytes)
        paras.update(paragraph_sets(corpus, args.others, toks, args.other_budget_bytes))
    finally:
        for e in engines:
            e.close()
    ppl_llama, samples = llama_measure(ggufs, paras, args.threads)
    ppl_torch = None if args.no_torch else torch_measure(dirs, paras, args.threads)
    onnx_dir = work / f"onnx-trimmed-{args.onnx}"
    samples_onnx = onnx_samples(onnx_dir, args.langs) if onnx else None
    log("decode speed (alternating rounds)")
    sp = speed(ggufs, args.rounds, args.threads)

    plan = json.loads((dirs["trimmed"] / "pruning_plan.json").read_text())
    v = {k: x for k, x in plan["vocab"].items() if k != "kept_ids"}
    worst = max(ppl_llama["pruned+trimmed"][l]["ppl_per_byte"] / ppl_llama["pruned"][l]["ppl_per_byte"]
                for l in args.langs)
    share = gg["pruned+trimmed"]["file_bytes"] / gg["dense"]["file_bytes"]
    res = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
        "rate": args.rate, "langs": args.langs, "others": args.others, "quant": args.quant,
        "rounds": args.rounds, "threads": args.threads,
        "budget_bytes": args.budget_bytes, "other_budget_bytes": args.other_budget_bytes,
        "ppl_langs": args.langs + args.others,
        "vocab": v,
        "gguf": {k: {x: g.get(x) for x in ("path", "file_bytes", "architecture", "parameters",
                                           "parity", "tokenizer", "sample")} for k, g in gg.items()},
        "speed": {r["label"]: r["decode_tok_s"] for r in sp["results"]},
        "speed_raw": sp,
        "ppl_llama": ppl_llama, "ppl_torch": ppl_torch,
        "samples_llama": samples, "samples_onnx": samples_onnx,
        "onnx": None if not onnx else {"precision": args.onnx, "parity": onnx.get("parity"),
                                       "bytes": sum(f.stat().st_size for f in onnx_dir.rglob("*")
                                                    if f.is_file())},
        "goals": {"size_share": share, "size_met": share <= 0.40, "worst_target_ppl_ratio": worst,
                  "ppl_met": worst <= 1.10},
        "seconds": round(time.perf_counter() - t0),
    }
    _write(RESULTS.with_suffix(".json"), json.dumps(res, indent=1, ensure_ascii=False, default=str))
    md = markdown(res)
    _write(RESULTS.with_suffix(".md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

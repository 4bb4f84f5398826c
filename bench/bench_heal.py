"""Healing and searched widths on the embedded model (issue 13's figures).

Targets {en, de, fr} (--langs), FFN only (no vocabulary trimming), PyTorch fp32. Every model
is scored on the same bytes of two texts no fitting step read: the unseen domain's eval
split (corpus.unseen_domain) and the in-domain eval split (babel_edge.evaluate), plus
greedy continuations of fixed prompts (evaluate.generation_checks: counting, a capital, a
story opening; repeated-4-gram share).

    rows  dense | pruned at --rate (mass, --schedule: adaptive unless given — the first
          committed rows; another schedule's rows are named "pruned@search" etc.,
          compensation with the fixed ridge) |
          the same healed by each recipe (block reconstruction, distillation, both) |
          uniform vs search widths at each of --search-rates, compensation on, unhealed
          (and healed when --heal-search)

    python bench/bench_heal.py [--rate 0.5] [--tokens 65536] [--recipes blocks,distill,...]
                               [--distill-steps 150] [--search-rates 0.5,0.7] [--only ROW,...]
                               [--schedule adaptive|search|uniform]

Results are merged row by row into bench/results/heal_gemma3_270m.json (a rerun skips rows
that are there; --redo ROW recomputes one) and bench/results/heal_gemma3_270m.md.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

from common import bits_per_byte, log, run_texts

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "heal_gemma3_270m"


def _heal(a, **kw):
    from babel_edge.heal import HealOptions

    return HealOptions(tokens=a.tokens, lr=a.lr, distill_lr=a.distill_lr, threads=a.threads,
                       **kw)


# the healing recipes compared: block reconstruction alone, distillation alone, both
RECIPES = {
    "blocks": lambda a: _heal(a, epochs=a.epochs),
    "distill": lambda a: _heal(a, epochs=0, distill_steps=a.distill_steps),
    "blocks+distill": lambda a: _heal(a, epochs=a.epochs, distill_steps=a.distill_steps),
}


def generation(lm, model, langs) -> dict:
    """Greedy continuations of `model` (a pruned or healed copy of lm.model, same tokenizer)."""
    import dataclasses

    from babel_edge.evaluate import generation_checks
    from babel_edge.runtime.engines.pytorch import TorchEngine

    eng = TorchEngine(dataclasses.replace(lm, model=model))
    return generation_checks(eng, langs, max_new_tokens=24)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--langs", default="en,de,fr")
    p.add_argument("--rate", type=float, default=0.5)
    p.add_argument("--tokens", type=int, default=65536)
    p.add_argument("--recipes", default=",".join(RECIPES),
                   help=f"healing recipes to run ({', '.join(RECIPES)})")
    p.add_argument("--epochs", type=int, default=1, help="block reconstruction passes")
    p.add_argument("--lr", type=float, default=1e-4, help="block reconstruction learning rate")
    p.add_argument("--distill-steps", type=int, default=150)
    p.add_argument("--distill-lr", type=float, default=5e-5)
    p.add_argument("--search-rates", default="0.5,0.7")
    p.add_argument("--heal-search", action="store_true")
    p.add_argument("--schedule", default="adaptive",
                   help="schedule of the pruned model that is healed (the committed rows: adaptive)")
    p.add_argument("--max-bytes", type=int, default=12000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", help="comma-separated row names to run")
    p.add_argument("--redo", help="comma-separated row names to recompute")
    a = p.parse_args(argv)

    import torch

    from babel_edge.corpus import parse_langs
    from babel_edge.heal.data import training_text
    from babel_edge.heal.run import heal_loaded
    from babel_edge.io import read_json, write_json, write_text
    from babel_edge.models import load_model
    from babel_edge.pipeline import profile_cache_path
    from babel_edge.profile import load_profile, profile_model, save_profile
    from babel_edge.prune import PruneOptions, prune_loaded

    torch.set_num_threads(a.threads)
    langs = parse_langs(a.langs)
    unseen, fit, texts = run_texts(langs)
    path = RESULTS.with_suffix(".json")
    res = read_json(path) if path.exists() else {"rows": {}}
    command = "python bench/bench_heal.py " + " ".join(argv or sys.argv[1:])
    commands = res.get("commands") or ([res["command"]] if res.get("command") else [])
    res.update(model="gemma-3-270m", langs=langs, unseen_domain=unseen, max_bytes=a.max_bytes,
               commands=commands + [command] if command not in commands else commands)
    res.pop("command", None)
    # rows of a pruned model made with another schedule than the committed rows' adaptive
    tag = "" if a.schedule == "adaptive" else f"@{a.schedule}"
    only = set(a.only.split(",")) if a.only else None
    redo = set(a.redo.split(",")) if a.redo else set()

    def want(name: str) -> bool:
        return (only is None or name in only) and (name not in res["rows"] or name in redo)

    def record(name: str, row: dict) -> None:
        res["rows"][name] = row
        write_json(path, res)
        write_text(RESULTS.with_suffix(".md"), markdown(res))
        log(f"{name}: {row.get('unseen')}")

    lm = load_model(None)
    prof_path = profile_cache_path(lm.fingerprint, langs, 8192)
    if not prof_path.exists():
        log("profiling")
        save_profile(profile_model(lm, langs, fit), prof_path)
    prof = load_profile(prof_path, lm.fingerprint)

    if want("dense"):
        record("dense", {"label": "dense", **bits_per_byte(lm.model, lm.tokenizer, texts, a.max_bytes),
                         "generation": generation(lm, lm.model, langs)})

    pruned = None
    if want("pruned" + tag) or any(want(f"healed-{r}{tag}") for r in a.recipes.split(",")):
        log(f"pruning at {a.rate}")
        pruned, plan = prune_loaded(lm, langs, a.rate, PruneOptions(schedule=a.schedule), profile=prof,
                                     texts_for=fit)
    if want("pruned" + tag):
        record("pruned" + tag, {"label": f"pruned {a.rate} (mass, {a.schedule}, compensation)",
                          **bits_per_byte(pruned, lm.tokenizer, texts, a.max_bytes),
                          "generation": generation(lm, pruned, langs)})
    text = None
    for recipe in a.recipes.split(","):
        name = f"healed-{recipe}{tag}"
        if not want(name):
            continue
        o = RECIPES[recipe](a)
        text = text or training_text(langs, fit, lm.tokenizer, 256, a.tokens)
        student = copy.deepcopy(pruned)
        log(f"healing: {recipe} ({o})")
        rec = heal_loaded(lm.model, student, text, o)
        record(name, {"label": f"pruned {a.rate} ({a.schedule}) + healed: {recipe} "
                               f"({rec['tokens']:,} tokens)",
                      "recipe": recipe, "options": rec["options"], "method": rec["method"],
                      "heal_seconds": rec["seconds"], "heal_tokens": rec["tokens"],
                      "mean_rel_error": [rec["mean_rel_error_before"], rec["mean_rel_error_after"]],
                      "distillation": rec["distillation"],
                      **bits_per_byte(student, lm.tokenizer, texts, a.max_bytes),
                      "generation": generation(lm, student, langs)})
        del student
    for rate in [float(x) for x in a.search_rates.split(",") if x]:
        for schedule in ("uniform", "search"):
            name = f"{schedule}-{rate:g}"
            if not want(name):
                continue
            t0 = time.perf_counter()
            model, plan = prune_loaded(lm, langs, rate, PruneOptions(schedule=schedule),
                                       profile=prof, texts_for=fit)
            row = {"label": f"{schedule} widths at {rate:g} (mass, compensation)",
                   "seconds_prune": round(time.perf_counter() - t0, 1), "widths": plan.widths,
                   "search": plan.search, **bits_per_byte(model, lm.tokenizer, texts, a.max_bytes)}
            if a.heal_search:
                text = text or training_text(langs, fit, lm.tokenizer, 256, a.tokens)
                heal_loaded(lm.model, model, text, RECIPES["distill"](a))
                row["healed"] = bits_per_byte(model, lm.tokenizer, texts, a.max_bytes)
            record(name, row)
            del model
    print(markdown(res))
    return 0


def markdown(res: dict) -> str:
    langs, rows = res["langs"], res["rows"]
    dense = rows.get("dense")
    lines = [f"# Healing and searched widths — Gemma 3 270M, targets {', '.join(langs)}", "",
             "Made by " + ", then ".join(f"`{c}`" for c in res.get("commands") or [res.get("command")])
             + ". PyTorch fp32, FFN only (no vocabulary trimming). Bits "
             f"per byte on the same bytes for every model ({res['max_bytes']:,} per language and "
             f"text): *unseen* = eval split of the '{res['unseen_domain']}' domain, which no "
             f"profiling, calibration, healing or search read; *eval* = in-domain eval split. "
             f"× = ratio to dense.", ""]
    head = "| model | " + " | ".join(f"{l} unseen (×)" for l in langs) + \
        " | mean × unseen | mean × eval | healing s |"
    lines += [head, "|---|" + "---:|" * (len(langs) + 3)]
    for name, r in rows.items():
        if "unseen" not in r:
            continue
        cells = []
        for l in langs:
            x = r["unseen"][l]
            cells.append(f"{x:.3f}" + (f" (×{x / dense['unseen'][l]:.3f})" if dense else ""))
        mu = mean_ratio(r, dense, "unseen") if dense else None
        me = mean_ratio(r, dense, "eval") if dense else None
        lines.append(f"| {r['label']} | " + " | ".join(cells) +
                     f" | {'' if mu is None else f'{mu:.3f}'} | {'' if me is None else f'{me:.3f}'} "
                     f"| {r.get('heal_seconds', '')} |")
    gen = [(n, r) for n, r in rows.items() if "generation" in r]
    if gen:
        lines += ["", "Greedy continuations (24 tokens): repeated-4-gram share; counting correct; "
                      "capital correct", "", "| model | " + " | ".join(langs) + " |",
                  "|---|" + "---|" * len(langs)]
        for n, r in gen:
            cells = []
            for l in langs:
                cells.append(generation_cell(r["generation"].get(l, [])))
            lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
        lines += ["", "Counting prompt `1, 2, 3, 4,` (en):", ""]
        for n, r in gen:
            g = {x["kind"]: x for x in r["generation"].get(langs[0], [])}
            lines.append(f"- {r['label']}: `{g['counting']['continuation']!r}`")
    return "\n".join(lines) + "\n"


def generation_cell(checks: list) -> str:
    """One language's greedy checks: mean repeated-4-gram share; counting and capital correct."""
    g = {x["kind"]: x for x in checks}
    rep = sum(x["repeated_4gram_share"] for x in g.values()) / max(len(g), 1)
    return (f"{rep:.0%}; count {'✓' if g['counting']['correct'] else '✗'}; "
            f"capital {'✓' if g.get('capital', {}).get('correct') else '✗'}")


def mean_ratio(r: dict, dense: dict, name: str) -> float:
    return sum(r[name][l] / dense[name][l] for l in dense[name]) / len(dense[name])


if __name__ == "__main__":
    sys.exit(main())

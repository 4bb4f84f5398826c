"""Healing curve: unseen-domain quality against healing minutes, per distillation recipe.

Embedded Gemma 3 270M, targets {en, de, fr} (--langs), FFN only (no vocabulary trimming),
PyTorch fp32, --threads torch threads. The pruned model (--rate, --schedule, compensation
with the default held-out ridge) is healed by block reconstruction once (HealOptions'
defaults: 2 passes over --tokens training tokens of the fitting text), then each variant
continues from that same model with end-to-end distillation (KL over the teacher's top-k,
babel_edge.heal.distill) for --minutes of training time. Along the way the model is scored
on the unseen domain's eval split (the same bytes for every point; no healing step reads
it) every --every minutes of training time; scoring time is not counted. The minutes of a
point are blocks + teacher top-k + distillation so far: what a `babel-edge heal` run with
that budget spends. The last point of each variant is also scored in-domain and
continues the fixed prompts (repeated-4-gram share, counting).

    variants   TRAIN:LR[,...]   TRAIN: ffn (the kept FFN weights, the default) or all
                                (every decoder weight: attention and norms too)

    python bench/bench_heal_curve.py [--minutes 14] [--every 3.5]
                                     [--variants ffn:5e-5,ffn:2e-4,all:1e-4]

Writes bench/results/heal_curve_gemma3_270m.{json,md}.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

from bench_heal import generation, generation_cell
from common import bits_per_byte, log, run_texts

RESULTS = Path(__file__).resolve().parent / "results" / "heal_curve_gemma3_270m"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--langs", default="en,de,fr")
    p.add_argument("--rate", type=float, default=0.5)
    p.add_argument("--schedule", default="search")
    p.add_argument("--tokens", type=int, default=None, help="training tokens (default: HealOptions')")
    p.add_argument("--minutes", type=float, default=14.0, help="distillation minutes per variant")
    p.add_argument("--every", type=float, default=3.5, help="score every this many training minutes")
    p.add_argument("--variants", default="ffn:5e-5,ffn:2e-4,all:1e-4")
    p.add_argument("--max-bytes", type=int, default=12000)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)

    import torch

    from babel_edge.corpus import parse_langs
    from babel_edge.evaluate import generation_checks  # noqa: F401  (imported before any long run)
    from babel_edge.heal import HealOptions
    from babel_edge.heal import distill as D
    from babel_edge.heal.data import training_text
    from babel_edge.heal.run import heal_loaded
    from babel_edge.io import write_json, write_text
    from babel_edge.models import load_model
    from babel_edge.pipeline import profile_cache_path
    from babel_edge.profile import load_profile
    from babel_edge.prune import PruneOptions, prune_loaded
    from babel_edge.runtime.engines.pytorch import TorchEngine  # noqa: F401

    torch.set_num_threads(a.threads)
    langs = parse_langs(a.langs)
    unseen, fit, both = run_texts(langs)
    unseen_text = {"unseen": both["unseen"]}
    base = HealOptions(threads=a.threads)
    if a.tokens:
        base = base.with_(tokens=a.tokens)
    res = {"model": "gemma-3-270m", "langs": langs, "rate": a.rate, "schedule": a.schedule,
           "unseen_domain": unseen, "max_bytes": a.max_bytes, "threads": a.threads,
           "heal_tokens": base.tokens, "block_options": {"epochs": base.epochs, "lr": base.lr,
                                                        "batch_tokens": base.batch_tokens},
           "distill_batch": base.distill_batch, "top_k": base.top_k, "minutes": a.minutes,
           "command": "python bench/bench_heal_curve.py " + " ".join(argv or sys.argv[1:]),
           "points": {}, "final": {}}

    def save():
        write_json(RESULTS.with_suffix(".json"), res)
        write_text(RESULTS.with_suffix(".md"), markdown(res))

    lm = load_model(None)
    prof = load_profile(profile_cache_path(lm.fingerprint, langs, 8192), lm.fingerprint)
    res["dense"] = bits_per_byte(lm.model, lm.tokenizer, both, a.max_bytes)
    res["dense"]["generation"] = generation(lm, lm.model, langs)
    log(f"dense: {res['dense']['unseen']}")
    pruned, plan = prune_loaded(lm, langs, a.rate, PruneOptions(schedule=a.schedule), profile=prof,
                                texts_for=fit)
    res["widths"] = plan.widths
    start = {"minutes": 0.0, "stage": "pruned", **bits_per_byte(pruned, lm.tokenizer, unseen_text, a.max_bytes)}
    log(f"pruned: {start['unseen']}")
    text = training_text(langs, fit, lm.tokenizer, base.seq_len, base.tokens)
    rec = heal_loaded(lm.model, pruned, text, base.with_(distill_steps=0))
    blocks_min = rec["seconds"] / 60
    after_blocks = {"minutes": blocks_min, "stage": "blocks",
                    **bits_per_byte(pruned, lm.tokenizer, unseen_text, a.max_bytes)}
    log(f"blocks ({blocks_min:.1f} min): {after_blocks['unseen']}")
    t0 = time.perf_counter()
    top = D.teacher_topk(lm.model, text.teacher, base.top_k)
    top_min = (time.perf_counter() - t0) / 60
    res.update(blocks_minutes=blocks_min, teacher_topk_minutes=top_min)

    for v in a.variants.split(","):
        train, lr = v.split(":")
        name = f"distill {train} lr {float(lr):g}"
        student = copy.deepcopy(pruned)
        pts = [start, after_blocks]
        res["points"][name] = pts
        clock = {"train": 0.0, "last": time.perf_counter(), "next": a.every}

        def tick():
            now = time.perf_counter()
            clock["train"] += now - clock["last"]
            clock["last"] = now

        def on_step(step, loss, student=student, pts=pts, clock=clock):
            tick()
            if clock["train"] >= 60 * clock["next"] or clock["train"] >= 60 * a.minutes:
                pt = {"minutes": blocks_min + top_min + clock["train"] / 60, "stage": "distill",
                      "steps": step + 1, "loss": loss,
                      **bits_per_byte(student, lm.tokenizer, unseen_text, a.max_bytes)}
                pts.append(pt)
                save()
                log(f"{name} {pt['minutes']:.1f} min, {step + 1} steps: {pt['unseen']}")
                clock["next"] += a.every
                clock["last"] = time.perf_counter()          # scoring is not training time

        def stop(clock=clock):
            tick()
            return clock["train"] >= 60 * a.minutes

        d = D.distill(student, text.student, top, steps=10 ** 6, lr=float(lr), batch=base.distill_batch,
                      seed=base.seed, train=train, on_step=on_step, should_stop=stop)
        res["final"][name] = {"steps": d["steps"], "distillation": d,
                              **bits_per_byte(student, lm.tokenizer, both, a.max_bytes),
                              "generation": generation(lm, student, langs)}
        save()
        del student
    print(markdown(res))
    return 0


def _ratio(s: dict, dense: dict, text: str = "unseen") -> float:
    return sum(s[text][l] / dense[text][l] for l in dense[text]) / len(dense[text])


def markdown(res: dict) -> str:
    langs, dense = res["langs"], res["dense"]
    lines = [f"# Healing curve — Gemma 3 270M, rate {res['rate']}, {res['schedule']} widths, "
             f"targets {', '.join(langs)}", "",
             f"Made by `{res['command']}`. PyTorch fp32 on {res['threads']} CPU threads, FFN only (no "
             f"vocabulary trimming). Block reconstruction once ({res['block_options']['epochs']} passes "
             f"over {res['heal_tokens']:,} tokens of the fitting text, {res.get('blocks_minutes', 0):.1f} "
             f"min), the teacher's top-{res['top_k']} once ({res.get('teacher_topk_minutes', 0):.1f} min), "
             f"then each distillation variant from the same model ({res['distill_batch']} sequences "
             f"per step). Bits per byte on {res['max_bytes']:,} bytes per language of the unseen "
             f"domain's eval split ('{res['unseen_domain']}'; no healing step read it); × = ratio to "
             f"dense, mean over the languages. Minutes: healing time so far (scoring not counted).", "",
             "| variant | minutes | steps | " + " | ".join(f"{l} ×" for l in langs) + " | mean × |",
             "|---|---:|---:|" + "---:|" * (len(langs) + 1)]
    shown = set()
    for name, pts in res["points"].items():
        for pt in pts:
            label = name if pt["stage"] == "distill" else pt["stage"]
            if pt["stage"] != "distill" and label in shown:   # the shared start, once
                continue
            shown.add(label)
            lines.append(f"| {label} | {pt['minutes']:.1f} | {pt.get('steps', '')} | "
                         + " | ".join(f"{pt['unseen'][l] / dense['unseen'][l]:.3f}" for l in langs)
                         + f" | {_ratio(pt, dense):.3f} |")
    if res.get("notes"):
        lines += ["", "Notes (added to the results after the run):", ""] + [f"- {n}" for n in res["notes"]]
    if res["final"]:
        lines += ["", "End of each variant: unseen and in-domain (eval split) mean ×; greedy "
                  "continuations (24 tokens): repeated-4-gram share; counting correct; capital "
                  "correct.", "",
                  "| model | unseen × | in-domain × | " + " | ".join(langs) + " |",
                  "|---|---:|---:|" + "---|" * len(langs)]
        rows = [("dense", dense)] + list(res["final"].items())
        for name, f in rows:
            g = f["generation"]
            lines.append(f"| {name} | {_ratio(f, dense):.3f} | {_ratio(f, dense, 'eval'):.3f} | "
                         + " | ".join(generation_cell(g.get(l, [])) for l in langs) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

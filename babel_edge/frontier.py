"""The quality–size frontier: which mix of FFN pruning, vocabulary trimming and quantization
keeps the target languages best for a size budget.

    grid     FFN rates x vocabulary sizes (None = the full vocabulary) x GGUF precisions
             (x healing on/off); every point is built with the same library calls as
             `build` (prune → export_gguf, parity-checked)
    measure  file size; bits per byte per target language on the unseen-domain text (the
             same bytes for every point, babel_edge.evaluate); peak RSS, prefill and decode
             tok/s in llama.cpp (runtime.bench workers, fresh processes)
    read     the Pareto-optimal points (no other point is both smaller and better) and, for a
             budget (--max-mb, --min-tok-s), the best point and the exact `build` command

The sweep is resumable: every measured point is written to frontier.json at once and a
rerun measures only what is missing; each point's artefacts are deleted after measuring
unless `keep`. Pruned bodies (one per rate x vocabulary x healing) are shared by their
precisions.
"""
from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from .errors import UserError

DEFAULT_RATES = (0.0, 0.25, 0.5)
DEFAULT_VOCAB = (None, 65536)
DEFAULT_QUANTS = ("q8_0", "q5_k_m", "q4_k_m", "q3_k_m")


@dataclass(frozen=True)
class Point:
    rate: float
    vocab: int | None          # kept tokens (None: the full vocabulary)
    quant: str
    heal: bool = False

    @property
    def body(self) -> str:
        return f"r{self.rate:g}-v{self.vocab or 'full'}" + ("-healed" if self.heal else "")

    @property
    def key(self) -> str:
        return f"{self.body}-{self.quant}"

    def label(self) -> str:
        parts = [self.quant]
        if self.rate:
            parts.append(f"FFN {self.rate:g}")
        if self.vocab:
            parts.append(f"vocab {self.vocab // 1024}k")
        if self.heal:
            parts.append("healed")
        return ", ".join(parts)


def grid(rates: Sequence[float] = DEFAULT_RATES, vocab: Sequence[int | None] = DEFAULT_VOCAB,
         quants: Sequence[str] = DEFAULT_QUANTS, heal: Sequence[bool] = (False,)) -> list[Point]:
    from . import precision as P

    quants = [P.get("gguf", q).name for q in quants]
    for r in rates:
        if not 0 <= r < 1 or math.isnan(r):
            raise UserError(f"frontier rates are shares of FFN parameters in [0, 1), not {r}")
    return [Point(float(r), v, q, h) for r in rates for v in vocab for h in heal for q in quants
            if not (h and r == 0)]


# ------------------------------------------------------------------ reading the results

def pareto(rows: Sequence[dict], x: str = "file_mb", y: str = "bpb_mean") -> list[bool]:
    """For each row: True when no other row is at most as large in `x` and as low in `y`, and
    strictly better in one of them (both minimised)."""
    out = []
    for a in rows:
        dominated = any(b is not a and b[x] <= a[x] and b[y] <= a[y] and (b[x] < a[x] or b[y] < a[y])
                        for b in rows)
        out.append(not dominated)
    return out


def measured(rows: Sequence[dict]) -> list[dict]:
    """The points that were measured (not those whose export failed its parity gate)."""
    return [r for r in rows if "bpb_mean" in r]


def best(rows: Sequence[dict], max_mb: float | None = None, min_tok_s: float | None = None) -> dict | None:
    """The row with the lowest mean bits per byte within the budget (None when nothing fits)."""
    ok = [r for r in measured(rows) if (max_mb is None or r["file_mb"] <= max_mb)
          and (min_tok_s is None or (r.get("decode_tok_s") or 0) >= min_tok_s)]
    return min(ok, key=lambda r: (r["bpb_mean"], r["file_mb"])) if ok else None


def build_command(row: dict, langs: Sequence[str], model: str | None = None) -> str:
    """The `babel-edge build` command that makes this point's GGUF."""
    p = row["point"]
    cmd = ["babel-edge", "build", "--langs", ",".join(langs), "--rate", f"{p['rate']:g}"]
    if model:
        cmd += ["--model", model]
    if p["vocab"]:
        cmd += ["--trim-vocab", "--vocab-size", str(p["vocab"])]
    if p["heal"]:
        cmd += ["--heal"]
    cmd += ["--gguf", p["quant"], "--onnx", "none"]
    return " ".join(cmd)


def markdown(res: dict) -> str:
    rows = measured(res["points"])
    failed = [r for r in res["points"] if "parity_failed" in r]
    langs = res["langs"]
    on = pareto(rows)
    lines = [f"Frontier for {', '.join(langs)} on {res['model']} — bits per byte on unseen-domain "
             f"text ('{res['unseen_domain']}', {res['unseen_bytes']:,} bytes per language, the same "
             f"bytes for every point); llama.cpp {res['threads']} threads, {res['rounds']} speed "
             f"rounds (median). ★ = Pareto-optimal (no point is both smaller and better)."
             + "".join(f"\nMade by `{c}`." for c in res.get("commands", [])), "",
             "| point | MB | " + " | ".join(langs) + " | mean | × dense | decode tok/s | prefill tok/s "
             "| peak RSS MB | parity argmax |",
             "|---|---:|" + "---:|" * len(langs) + "---:|---:|---:|---:|---:|---:|"]
    base = next((r for r in rows if r["point"]["rate"] == 0 and not r["point"]["vocab"]
                 and r["point"]["quant"] == "q8_0"), None)
    for r, star in sorted(zip(rows, on), key=lambda t: t[0]["file_mb"]):
        ratio = f"{r['bpb_mean'] / base['bpb_mean']:.3f}" if base else ""
        lines.append(
            f"| {'★ ' if star else ''}{Point(**r['point']).label()} | {r['file_mb']:.1f} | "
            + " | ".join(f"{r['bpb'][l]:.3f}" for l in langs)
            + f" | {r['bpb_mean']:.3f} | {ratio} | {_f(r.get('decode_tok_s'))} | "
              f"{_f(r.get('prefill_tok_s'))} | {_f(r.get('peak_rss_mb'), 0)} | "
              f"{r['parity_argmax']:.1%} |")
    if failed:
        lines += ["", "Not offered — the export failed its parity gate (`build` would refuse it "
                      "too; babel_edge/precision.py):", ""]
        lines += [f"- {Point(**r['point']).label()}: {r['parity_failed']}" for r in failed]
    return "\n".join(lines) + "\n"


def _f(x, digits: int = 1) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def plot(res: dict, path: Path) -> None:
    """Bits per byte vs MB: one panel per target language plus their mean, Pareto points
    marked and labelled."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_file

    rows, langs = measured(res["points"]), res["langs"]
    panels = langs + ["mean"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False)
    colours = {0.0: "#444", 0.25: "#1f77b4", 0.5: "#2ca02c", 0.7: "#d62728"}
    for ax, name in zip(axes[0], panels):
        key = "bpb_mean" if name == "mean" else None
        ys = [r["bpb_mean"] if key else r["bpb"][name] for r in rows]
        pts = [dict(r, _y=y) for r, y in zip(rows, ys)]
        on = pareto(pts, "file_mb", "_y")
        for r, star in zip(pts, on):
            p = r["point"]
            ax.scatter(r["file_mb"], r["_y"], s=60 if star else 22,
                       marker="s" if p["vocab"] else "o", edgecolors="k" if star else "none",
                       color=colours.get(p["rate"], "#9467bd"), zorder=3 if star else 2)
        front = sorted((r for r, s in zip(pts, on) if s), key=lambda r: r["file_mb"])
        ax.plot([r["file_mb"] for r in front], [r["_y"] for r in front], "k--", lw=0.8, zorder=1)
        for r in front:
            ax.annotate(Point(**r["point"]).label(), (r["file_mb"], r["_y"]), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
        ax.set_title(f"{name} (unseen domain)")
        ax.set_xlabel("GGUF file MB")
        ax.set_ylabel("bits per byte")
        ax.grid(alpha=0.3)
    fig.suptitle(f"babel-edge frontier — {res['model']}; colour: FFN rate (grey 0, blue .25, "
                 f"green .5, red .7); square: trimmed vocabulary; ringed: Pareto-optimal", fontsize=9)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


# ------------------------------------------------------------------ the sweep

@dataclass
class Sweep:
    langs: list[str]
    model: str | None
    points: list[Point]
    out: Path
    work: Path
    profile: Path | None = None
    rounds: int = 2
    threads: int | None = None
    max_bytes: int = 12_000
    keep: bool = False
    command: str | None = None     # what made it (recorded in frontier.json and .md)


def run_sweep(s: Sweep, *, corpus=None, progress: Callable[[int, int, str], None] | None = None,
              cancel: threading.Event | None = None) -> dict:
    """Measure every point of `s` not yet in s.out/frontier.json; returns the results."""
    from .corpus import load_corpus
    from .io import read_json, remove, write_json, write_text
    from .pipeline import profile_cache_path

    corpus = corpus or load_corpus()
    unseen = corpus.unseen_domain(s.langs)
    if not unseen:
        raise UserError(f"the corpus has no domain that all of {', '.join(s.langs)} have and that "
                        f"could be held out; the frontier is measured on unseen-domain text")
    texts = {l: corpus.texts(l, "eval", domains=[unseen]) for l in s.langs}
    res_path = s.out / "frontier.json"
    res = read_json(res_path) if res_path.exists() else None
    if res is None or res.get("langs") != s.langs or res.get("model") != (s.model or "gemma-3-270m"):
        res = {"langs": s.langs, "model": s.model or "gemma-3-270m", "unseen_domain": unseen,
               "rounds": s.rounds, "threads": s.threads, "points": []}
    done = {r["key"] for r in res["points"]}
    todo = [p for p in s.points if p.key not in done]
    if s.command and s.command not in res.setdefault("commands", []):
        res["commands"].append(s.command)
    from .evaluate import scoring_units

    units = {l: scoring_units(t, s.max_bytes) for l, t in texts.items()}
    res["unseen_bytes"] = min(sum(len(u.encode()) for u in us) for us in units.values())
    bodies: dict[str, Path] = {}
    lm = None
    for i, p in enumerate(todo):
        if progress:
            progress(i, len(todo), p.label())
        if cancel is not None and cancel.is_set():     # what is written stays; rerun resumes
            break
        if p.body not in bodies:
            if lm is None:
                from .models import load_model
                lm = load_model(s.model)
            bodies[p.body] = _body(s, p, lm, profile_cache_path)
        row = _measure(s, p, bodies[p.body], units)
        res["points"].append(row)
        res["threads"] = row.pop("threads")
        write_json(res_path, res)
        last_of_body = not any(q.body == p.body for q in todo[i + 1:])
        if last_of_body and not s.keep and bodies[p.body] != Path(lm.path if lm else ""):
            remove(bodies[p.body])
    if progress and not (cancel is not None and cancel.is_set()):
        progress(len(todo), len(todo), "done")
    rows = measured(res["points"])
    for r, star in zip(rows, pareto(rows)):
        r["pareto"] = star
    write_json(res_path, res)
    write_text(s.out / "frontier.md", markdown(res))
    plot(res, s.out / "frontier.png")
    return res


def _body(s: Sweep, p: Point, lm, profile_cache_path) -> Path:
    """The pruned (or trimmed, or dense) model directory of a point's body."""
    from .heal.options import HealOptions
    from .prune import PruneOptions, prune

    if p.rate == 0 and not p.vocab:
        return Path(lm.path)
    d = s.work / "bodies" / p.body
    if (d / "pruning_plan.json").exists():
        return d
    profile = s.profile
    if profile is None and p.rate > 0:
        from .profile import profile_model, save_profile
        from .corpus import load_corpus
        from .prune.run import fitting_texts

        profile = profile_cache_path(lm.fingerprint, s.langs, 8192)
        if not profile.exists():
            corp = load_corpus()
            save_profile(profile_model(lm, s.langs, fitting_texts(corp, s.langs)), profile)
        s.profile = profile
    o = PruneOptions(trim_vocab=bool(p.vocab), vocab_size=p.vocab,
                     heal=HealOptions() if p.heal else None)
    prune(s.model, profile if p.rate > 0 else None, s.langs, p.rate, d, options=o)
    return d


def _measure(s: Sweep, p: Point, body: Path, units: dict[str, list[str]]) -> dict:
    from .evaluate import score_units
    from .exporters.gguf import export_gguf
    from .io import remove
    from .runtime.bench import Subject, run_bench
    from .runtime.engines.llamacpp import LlamaCppEngine

    from .exporters.parity import ParityError

    gguf = s.work / "points" / f"{p.key}.gguf"
    t0 = time.perf_counter()
    try:
        summary = export_gguf(str(body), gguf, p.quant, force=True, verbose=False)
    except ParityError as e:          # recorded, not offered: `build` would refuse it as well
        return {"key": p.key, "point": asdict(p), "parity_failed": str(e),
                "threads": s.threads or os.cpu_count()}
    t_export = time.perf_counter() - t0
    eng = LlamaCppEngine(gguf, n_ctx=528, n_threads=s.threads)
    try:
        bpb = {l: score_units(l, us, eng.tokenize, eng.score, text="unseen").to_dict()
               for l, us in units.items()}
    finally:
        eng.close()
    speed = run_bench([Subject(p.key, str(gguf), "llama.cpp")], "cpu", s.rounds, s.threads)
    r = speed["results"][0]
    row = {"key": p.key, "point": asdict(p), "file_mb": gguf.stat().st_size / 1e6,
           "bpb": {l: x["bits_per_byte"] for l, x in bpb.items()},
           "tokens_per_byte": {l: x["tokens_per_byte"] for l, x in bpb.items()},
           "bpb_mean": sum(x["bits_per_byte"] for x in bpb.values()) / len(bpb),
           "decode_tok_s": r["decode_tok_s"]["median"], "prefill_tok_s": r["prefill512_tok_s"]["median"],
           "peak_rss_mb": r["peak_rss_mb"]["median"], "threads": speed["threads"],
           "parity_argmax": summary["parity"]["argmax_agreement"],
           "parity_ppl_ratio": summary["parity"]["ppl_ratio"],
           "parity_max_abs_diff": summary["parity"]["max_abs_diff"],
           "seconds_export": round(t_export, 1)}
    if not s.keep:
        remove(gguf, Path(str(gguf)[:-5] + ".export_summary.json"))
    return row

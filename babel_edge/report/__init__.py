"""babel_edge.report: heatmaps, shared/specific experts and language-family analysis of a profile.

write_report(profile, out_dir) -> summary dict; writes out_dir/report.html (self-contained,
images inlined as base64), out_dir/summary.json and out_dir/*.png. The numbers come from
analysis.py (definitions in its docstring), the pictures from figures.py, the page from
page.py.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from . import analysis, figures, page
from .analysis import Thresholds, thresholds_for

__all__ = ["write_report", "summarise", "Thresholds", "thresholds_for"]


def _labels(profile) -> dict[str, list[str]]:
    """Label sets to test clusters against. Unknown values become per-language singletons."""
    info = profile.language_info()
    out = {}
    for key in ("family", "branch", "script", "source"):
        vals = [d.get(key) for d in info]
        if any(vals):
            out[key] = [v if v else f"?{d['code']}" for v, d in zip(vals, info)]
    return out


def summarise(profile, high: float | None = None, low: float | None = None,
              most: float = 0.75) -> tuple[dict, dict]:
    """(summary dict, arrays for the figures) of a profile."""
    share = profile.header["activation"]["top_k_share"]
    t = thresholds_for(share, high, low, most)
    langs = profile.langs
    freq = profile.freq_grid().numpy()                     # [Lang, Layer, E]
    base = profile.freq_grid(baseline=True).numpy()
    neuron = np.concatenate([profile.neuron_freq(i).numpy() for i in range(profile.n_layers)], 1)
    tables = analysis.expert_tables(freq, langs, t)
    base_tables = analysis.expert_tables(base, langs, t)
    labels = _labels(profile)
    vectors = {"experts": freq.reshape(len(langs), -1), "random_split": base.reshape(len(langs), -1),
               "neurons": neuron}
    agree = analysis.family_agreement(vectors, labels) if len(langs) >= 3 else {}
    sim = analysis.similarity(vectors["experts"])
    summary = {
        "profile": str(profile.path) if profile.path else None,
        "model": profile.header["model"],
        "experts": {k: v for k, v in profile.header["experts"].items() if k != "digest"},
        "activation": profile.header["activation"],
        "thresholds": t.to_dict(),
        "languages": profile.language_info(),
        "per_layer": tables["per_layer"],
        "per_layer_random_split": base_tables["per_layer"],
        "high_per_language_layer": tables["high_per_language_layer"],
        "specific_per_language": tables["specific_per_language"],
        "specific_experts": tables["specific_experts"],
        "shared_experts": tables["shared_experts"],
        "family_agreement": agree,
        "similarity": {"langs": langs, "matrix": sim.round(4).tolist()},
    }
    arrays = {"freq": freq, "base": base, "sim": sim,
              "entropy": analysis.normalised_entropy(freq),
              "entropy_random": analysis.normalised_entropy(base),
              "layer_mass": profile.layer_mean_mass().numpy(), "thresholds": t}
    return summary, arrays


def write_report(profile, out_dir: str | Path, high: float | None = None, low: float | None = None,
                 most: float = 0.75) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary, arr = summarise(profile, high, low, most)
    langs = profile.langs
    fams = profile.families()
    info = {d["code"]: d for d in profile.language_info()}
    titles = [f"{lang} {info[lang].get('name') or ''} ({info[lang].get('family') or '?'})"
              for lang in langs]
    order = analysis.expert_order(arr["freq"])
    freq_o = figures._ordered(arr["freq"], order)
    files: dict[str, str] = {}

    def rel(name: str, p: Path) -> None:
        files[name] = p.name

    for i, lang in enumerate(langs):
        rel(f"heatmap_{lang}", figures.heatmap(
            freq_o[i], f"{titles[i]} — expert activation frequency", out / f"heatmap_{lang}.png"))
    rel("grid", figures.grid(freq_o, titles, out / "grid.png"))
    rel("grid_diff", figures.grid(freq_o, titles, out / "grid_diff.png", diff=True))
    rel("counts_per_layer", figures.counts_per_layer(summary["per_layer"], arr["freq"].shape[2],
                                                     out / "counts_per_layer.png",
                                                     summary["per_layer_random_split"]))
    rel("high_per_language", figures.high_per_language(summary["high_per_language_layer"],
                                                       out / "high_per_language.png"))
    rel("entropy", figures.entropy_histogram(arr["entropy"], arr["entropy_random"],
                                             profile.expert_map.method, out / "entropy.png"))
    rel("layer_mass", figures.layer_mass(arr["layer_mass"], langs, fams, out / "layer_mass.png"))
    leaf_order = list(range(len(langs)))
    if len(langs) >= 3:
        link = analysis.linkage(arr["sim"])
        p, leaf_order = figures.dendrogram(link, langs, fams, "languages clustered by expert "
                                           "activation frequencies", out / "dendrogram.png")
        rel("dendrogram", p)
        leaf_order = leaf_order[::-1]          # top-to-bottom as drawn
    rel("similarity", figures.similarity_matrix(arr["sim"], langs, fams, leaf_order,
                                                "language similarity (expert frequencies)",
                                                out / "similarity.png"))
    summary["similarity"]["cluster_order"] = [langs[i] for i in leaf_order]
    summary["figures"] = files
    _write_text(out / "summary.json", json.dumps(summary, indent=1, ensure_ascii=False))
    _write_text(out / "report.html", page.render(summary, out))
    return summary


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)

"""The one self-contained HTML page of a report (figures inlined as base64 PNG)."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from .analysis import __doc__ as DEFINITIONS

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}
pre{background:#f8f8f8;padding:.8em;overflow-x:auto;font-size:12px}
details summary{cursor:pointer;color:#036}.note{color:#555;font-size:13px}
"""


def _img(out: Path, name: str | None, alt: str) -> str:
    if not name:
        return ""
    data = base64.b64encode((out / name).read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list]) -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.3f}"
    return str(x)


def _agreement_rows(agree: dict) -> list[list]:
    rows = []
    for kind, res in agree.items():
        sh = res["shuffled"]
        rows.append([kind, res["experts"]["nn_same"], res["random_split"]["nn_same"],
                     res["neurons"]["nn_same"],
                     f"{sh['nn_same']:.3f} (p95 {sh['nn_same_p95']:.3f}; p={sh['nn_same_p']:.3f})",
                     res["experts"]["ari"], res["random_split"]["ari"], res["neurons"]["ari"],
                     f"{sh['ari']:.3f} (p95 {sh['ari_p95']:.3f}; p={sh['ari_p']:.3f})"])
    return rows


def render(s: dict, out: Path) -> str:
    figs = s["figures"]
    m, ex, act, t = s["model"], s["experts"], s["activation"], s["thresholds"]
    n_exp = ex["n_experts"][0] if ex["n_experts"] else 0
    langs = s["languages"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>babel-edge profile report — "
             f"{html.escape(str(m['name']))}</title><style>{CSS}</style></head><body>",
             f"<h1>Which experts fire for which language — {html.escape(str(m['name']))}</h1>",
             f"<p>{html.escape(str(m.get('family')))} ({html.escape(str(m['arch']))}), "
             f"{m['n_layers']} layers, fingerprint <code>{html.escape(m['fingerprint'])}</code>. "
             f"Every FFN split into {n_exp} experts of {ex['expert_size']} neurons "
             f"({html.escape(ex['method'])} split, seed {ex['seed']}); an expert is active on a token "
             f"when it is among the top {act['top_k'][0]} of its layer "
             f"(top-k share {act['top_k_share']:g}). {len(langs)} languages, "
             f"{sum(d['tokens'] for d in langs):,} tokens.</p>"]

    parts.append("<h2>How well do clusters of languages agree with language families?</h2>")
    if s["family_agreement"]:
        parts.append(_table(
            ["labels", "NN same: experts", "random split", "neurons", "shuffled labels",
             "ARI: experts", "random split", "neurons", "shuffled labels"],
            _agreement_rows(s["family_agreement"])))
        parts.append("<p class='note'>NN same: share of languages whose most similar language has "
                     "the same label (only languages with a relative in the set count). ARI: adjusted "
                     "Rand index of the dendrogram cut into as many clusters as labels. Random split: "
                     "the same tokens, experts = random neuron groups recorded in the same pass. "
                     "Shuffled: labels permuted over languages (mean, 95th percentile, and p = share of "
                     "shuffles at least as good as the real labels). Caveat: the built-in corpus mixes "
                     "two sources (LibreOffice help, UDHR) — the 'source' row shows how much of the "
                     "clustering follows the text's register rather than the language.</p>")
    parts.append(_img(out, figs.get("dendrogram"), "dendrogram"))
    parts.append(_img(out, figs.get("similarity"), "similarity matrix"))

    parts.append("<h2>Shared and language-specific experts per layer</h2>")
    pl, pr = s["per_layer"], s["per_layer_random_split"]
    rows = [[i, pl["shared_all"][i], pl["shared_most"][i], pl["specific"][i],
             pl["specific_one_language"][i], pl["high_mean_per_language"][i],
             pr["shared_all"][i], pr["specific"][i]] for i in range(len(pl["shared_all"]))]
    rows.append(["total", sum(pl["shared_all"]), sum(pl["shared_most"]), sum(pl["specific"]),
                 sum(pl["specific_one_language"]), "", sum(pr["shared_all"]), sum(pr["specific"])])
    parts.append(_img(out, figs.get("counts_per_layer"), "counts per layer"))
    parts.append(_table(["layer", "shared by all", f"shared by ≥{t['most']:.0%}", "specific",
                         "specific to 1 language", "high per language (mean)",
                         "random split: shared by all", "random split: specific"], rows))
    parts.append(f"<p class='note'>high: active on ≥ {t['high']:g} of a language's tokens; low: "
                 f"≤ {t['low']:g}; shared by most: high in ≥ {t['most']:.0%} of the languages; "
                 f"specific: high in some language(s) and low in ≥ {t['most']:.0%} of the others. "
                 f"The random-split columns apply the same rules to random neuron groups measured "
                 f"on the same tokens: what chance alone gives.</p>")
    parts.append(_img(out, figs.get("entropy"), "entropy histogram"))
    spl = s["specific_per_language"]
    parts.append("<h3>Language-specific experts per language</h3>")
    parts.append(_table(["language", "name", "family", "script", "tokens", "specific experts"],
                        [[d["code"], d.get("name") or d["code"], d.get("family") or "?",
                          d.get("script") or "?", d["tokens"], spl[d["code"]]] for d in langs]))
    spec = sorted(s["specific_experts"], key=lambda r: (r["entropy"], r["layer"]))
    parts.append(f"<details><summary>the {len(spec)} language-specific experts "
                 f"(lowest entropy first)</summary>")
    parts.append(_table(["layer", "expert", "languages", "entropy", "frequency"],
                        [[r["layer"], r["expert"], ", ".join(r["langs"]), r["entropy"],
                          ", ".join(f"{k} {v:.2f}" for k, v in r["freq"].items())] for r in spec]))
    parts.append("</details>")
    parts.append(_img(out, figs.get("high_per_language"), "high-frequency experts per language"))

    parts.append("<h2>Heatmaps</h2><p class='note'>Rows: layers (first at the top); columns: "
                 "experts of that layer, in the same order in every panel (by mean frequency over "
                 "languages, most used first).</p>")
    parts.append(_img(out, figs.get("grid"), "all languages"))
    parts.append(_img(out, figs.get("grid_diff"), "difference from the mean"))
    parts.append("<details><summary>one heatmap per language</summary>")
    for d in langs:
        parts.append(_img(out, figs.get(f"heatmap_{d['code']}"), d["code"]))
    parts.append("</details>")
    parts.append("<h2>Activation level per layer</h2>")
    parts.append(_img(out, figs.get("layer_mass"), "layer mass"))

    parts.append("<h2>Definitions</h2><pre>")
    parts.append(html.escape("\n".join(f"{k}: {v}" for k, v in act.items() if k != "top_k")))
    parts.append("\n" + html.escape(DEFINITIONS or "") + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)

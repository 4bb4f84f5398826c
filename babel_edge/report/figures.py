"""PNG figures of a profile (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 110


def family_colours(families: list[str]) -> dict[str, tuple]:
    """A dark, distinct colour per family (tab10 then Dark2: readable as text on white)."""
    palette = list(plt.get_cmap("tab10").colors) + list(plt.get_cmap("Dark2").colors)
    uniq = sorted(set(families), key=lambda f: (-families.count(f), f))
    return {f: palette[i % len(palette)] for i, f in enumerate(uniq)}


def _save(fig, path: Path) -> Path:
    # figures use the constrained layout: bbox_inches="tight" would cost a second draw
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _ordered(freq: np.ndarray, order: np.ndarray) -> np.ndarray:
    """[Lang, Layer, E] with every layer's experts put in `order` ([Layer, E])."""
    return np.take_along_axis(freq, order[None], axis=2)


def heatmap(freq_lang: np.ndarray, title: str, path: Path) -> Path:
    """One language: [Layer, E] (already ordered) frequency heatmap, layer 0 at the top."""
    L, E = freq_lang.shape
    fig, ax = plt.subplots(figsize=(max(6, E * 0.11 + 1.5), max(3, L * 0.22 + 1)), layout="constrained")
    im = ax.imshow(freq_lang, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xlabel("expert (same order in every language: by mean frequency over languages)")
    ax.set_ylabel("layer")
    ax.set_yticks(range(0, L, max(1, L // 9)))
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label="activation frequency (share of tokens)")
    return _save(fig, path)


def grid(freq: np.ndarray, titles: list[str], path: Path, diff: bool = False) -> Path:
    """All languages as small panels; diff=True shows freq minus the mean over languages."""
    n, L, E = freq.shape
    data = freq - np.nanmean(freq, 0, keepdims=True) if diff else freq
    cols = min(6, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.6, rows * 1.75 + 0.6), squeeze=False,
                             layout="constrained")
    if diff:
        lim = float(np.nanpercentile(np.abs(data), 99.5)) or 1.0
        kw = dict(cmap="RdBu_r", vmin=-lim, vmax=lim)
    else:
        kw = dict(cmap="viridis", vmin=0, vmax=1)
    im = None
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        im = ax.imshow(data[i], aspect="auto", interpolation="nearest", **kw)
        ax.set_title(titles[i], fontsize=8)
    fig.suptitle("expert activation frequency minus the mean over languages (red: used more by this "
                 "language)" if diff else "expert activation frequency per language "
                 "(rows: layers, top = first; columns: experts, same order in every panel)",
                 fontsize=10)
    fig.colorbar(im, ax=axes, shrink=0.6, label="difference" if diff else "frequency")
    return _save(fig, path)


def counts_per_layer(per_layer: dict, n_experts: int, path: Path,
                     baseline: dict | None = None) -> Path:
    fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
    names = {"shared_all": "shared by all languages", "shared_most": "shared by most languages",
             "specific": "language-specific (high in a few, low in most others)",
             "specific_one_language": "specific to exactly one language",
             "high_mean_per_language": "high-frequency, mean per language"}
    styles = {"shared_all": "-o", "shared_most": "--o", "specific": "-s",
              "specific_one_language": "--s", "high_mean_per_language": ":."}
    for key, label in names.items():
        ys = per_layer[key]
        ax.plot(range(len(ys)), ys, styles[key], label=label, ms=3)
    if baseline:                  # what the same rules give for random neuron groups
        for key, c in (("shared_all", "C0"), ("specific", "C2")):
            ax.plot(baseline[key], ":", color=c, alpha=0.6, lw=1.5,
                    label=f"random split: {names[key].split(' (')[0]}")
    ax.set_xlabel("layer")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel(f"experts (of {n_experts} per layer)")
    ax.set_title("where in depth languages share experts and where they diverge", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=2)
    return _save(fig, path)


def high_per_language(table: dict[str, list[int]], path: Path) -> Path:
    langs = list(table)
    m = np.array([table[lang] for lang in langs])
    fig, ax = plt.subplots(figsize=(max(5, m.shape[1] * 0.35 + 2), max(3, len(langs) * 0.2 + 1)), layout="constrained")
    im = ax.imshow(m, aspect="auto", cmap="magma", interpolation="nearest")
    ax.set_yticks(range(len(langs)), langs, fontsize=7)
    ax.set_xlabel("layer")
    ax.set_title("high-frequency experts per language and layer", fontsize=10)
    fig.colorbar(im, ax=ax, label="experts")
    return _save(fig, path)


def similarity_matrix(sim: np.ndarray, labels: list[str], families: list[str], order: list[int],
                      title: str, path: Path) -> Path:
    s = sim[np.ix_(order, order)]
    lab = [labels[i] for i in order]
    col = family_colours(families)
    n = len(order)
    fig, ax = plt.subplots(figsize=(n * 0.22 + 2.5, n * 0.22 + 1.5), layout="constrained")
    im = ax.imshow(s, cmap="coolwarm", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks(range(n), lab, rotation=90, fontsize=7)
    ax.set_yticks(range(n), lab, fontsize=7)
    for ticks in (ax.get_xticklabels(), ax.get_yticklabels()):
        for t, i in zip(ticks, order):
            t.set_color(col[families[i]])
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.7, label="cosine similarity (centred)")
    return _save(fig, path)


def dendrogram(link: np.ndarray, labels: list[str], families: list[str], title: str,
               path: Path) -> tuple[Path, list[int]]:
    from scipy.cluster.hierarchy import dendrogram as _dendrogram

    col = family_colours(families)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(5.5, n * 0.22 + 1.2), layout="constrained")
    d = _dendrogram(link, labels=[f"{lab}  ({fam})" for lab, fam in zip(labels, families)],
                    orientation="left", ax=ax, color_threshold=0, above_threshold_color="0.35",
                    leaf_font_size=7)
    for t in ax.get_yticklabels():
        fam = t.get_text().rsplit("(", 1)[-1].rstrip(")")
        t.set_color(col.get(fam, "black"))
    ax.set_xlabel("1 - similarity (average linkage)")
    ax.set_title(title, fontsize=10)
    return _save(fig, path), list(d["leaves"])


def entropy_histogram(ent_real: np.ndarray, ent_random: np.ndarray, method: str,
                      path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.5, 3.2), layout="constrained")
    bins = np.linspace(0, 1, 51)
    ax.hist(ent_real.ravel(), bins=bins, alpha=0.7, label=f"experts ({method} split)")
    ax.hist(ent_random.ravel(), bins=bins, alpha=0.5, label="random split (same tokens)")
    ax.set_yscale("log")
    ax.set_title("LAPE-style entropy of each expert's frequencies over languages", fontsize=10)
    ax.set_xlabel("normalised entropy of an expert's frequency over languages (0 = one language)")
    ax.set_ylabel("experts")
    ax.legend(fontsize=7)
    return _save(fig, path)


def layer_mass(mass: np.ndarray, langs: list[str], families: list[str], path: Path) -> Path:
    """[Lang, Layer] mean |a| per token summed over a layer's neurons."""
    col = family_colours(families)
    fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
    for i, lang in enumerate(langs):
        ax.plot(mass[i], color=col[families[i]], lw=0.8, alpha=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("mean sum |a| per token")
    ax.set_title("activation level per layer (one line per language, coloured by family)", fontsize=10)
    handles = [plt.Line2D([], [], color=c, label=f) for f, c in col.items()]
    ax.legend(handles=handles, fontsize=6, ncol=2, loc="best")
    ax.grid(alpha=0.3)
    return _save(fig, path)

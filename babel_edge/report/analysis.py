"""Numbers behind the report: shared and language-specific experts, language similarity,
clustering and how well it agrees with language families. Plain numpy/scipy on the
profile's frequency grid; no plotting here.

Definitions (r = the top-k share, the frequency an expert would have if every
expert were equally likely to be active):
  high       freq[lang, layer, e] >= `high` (default 2r: twice the base rate)
  low        freq[lang, layer, e] <= `low` (default r/2: half the base rate)
  shared     high in every language ("shared by all"), or in at least `most`
             of them ("shared by most")
  specific   high in some language(s) and low in at least `most` of the
             others: "high in one language, low elsewhere", tolerant of a few
             related languages using it too. Its languages are those where it
             is high; "specific to one language" when there is exactly one.
  entropy    LAPE's view (Tang et al. 2024), reported per expert: the entropy
             of its frequencies normalised over languages, / ln(#languages);
             0 = used by one language only, 1 = used equally by all. With
             top-k activation every token activates k experts, so no expert is
             ever near 0 on real text; the histogram compares it with the
             random split instead of thresholding it.
  similarity cosine similarity of languages' frequency vectors (all layers and
             experts), each expert centred on its mean over languages so the
             part every language shares does not dominate.
  clusters   average-linkage hierarchical clustering on 1 - similarity.
  agreement  nn_same: share of languages (with a relative of the same label in
             the profile) whose most similar other language has the same label;
             ari: adjusted Rand index between the tree cut into as many clusters
             as there are labels and the labels themselves.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SHUFFLES = 1000


@dataclass(frozen=True)
class Thresholds:
    high: float            # frequency from which an expert is "high" for a language
    low: float             # frequency up to which it is "low"
    most: float            # share of languages for "shared by most" / "low in most others"

    def to_dict(self) -> dict:
        return asdict(self)


def thresholds_for(top_k_share: float, high: float | None = None, low: float | None = None,
                   most: float = 0.75) -> Thresholds:
    return Thresholds(high=min(1.0, 2 * top_k_share) if high is None else high,
                      low=top_k_share / 2 if low is None else low, most=most)


# ------------------------------------------------------------------ experts

def expert_order(freq: np.ndarray) -> np.ndarray:
    """[Lang, Layer, E] -> [Layer, E] expert ids per layer by mean frequency over languages,
    highest first: the one column order used in every heatmap panel."""
    return np.argsort(-np.nan_to_num(freq.mean(0), nan=-1), axis=1, kind="stable")


def normalised_entropy(freq: np.ndarray) -> np.ndarray:
    """[Lang, Layer, E] -> [Layer, E] entropy of each expert's frequency distribution over
    languages / ln(Lang): 0 = used by one language only, 1 = used equally by all."""
    n = freq.shape[0]
    total = freq.sum(0, keepdims=True)
    p = np.divide(freq, total, out=np.zeros_like(freq), where=total > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0).sum(0)
    h = h / np.log(n) if n > 1 else np.zeros_like(h)
    return np.where(total[0] > 0, h, 1.0)        # an expert never active is not "specific"


def classify_experts(freq: np.ndarray, t: Thresholds) -> dict[str, np.ndarray]:
    """Boolean masks over [Lang, Layer, E] / [Layer, E] (see module doc)."""
    n = freq.shape[0]
    high = freq >= t.high                                        # [Lang, Layer, E]
    n_high = high.sum(0)                                         # [Layer, E]
    # share of the *other* languages where the expert is low (a high language is never low)
    n_low = (freq <= t.low).sum(0)
    others_low = n_low / (n - 1) if n > 1 else np.zeros_like(n_low, dtype=float)
    specific = (n_high >= 1) & (others_low >= t.most) & (n > 1)
    return {
        "high": high,
        "shared_all": n_high == n,
        "shared_most": n_high >= np.ceil(t.most * n),
        "specific": specific,
        "specific_langs": specific[None] & high,                 # [Lang, Layer, E]
        "entropy": normalised_entropy(freq),
    }


def expert_tables(freq: np.ndarray, langs: list[str], t: Thresholds) -> dict:
    """JSON-able counts per layer and lists of shared / specific experts."""
    c = classify_experts(freq, t)
    L = freq.shape[1]
    spec_langs = c["specific_langs"]
    specific = []
    for layer, e in zip(*np.nonzero(c["specific"])):
        owners = [langs[i] for i in np.nonzero(spec_langs[:, layer, e])[0]]
        specific.append({"layer": int(layer), "expert": int(e), "langs": owners,
                         "entropy": round(float(c["entropy"][layer, e]), 3),
                         "freq": {lang: round(float(freq[langs.index(lang), layer, e]), 3)
                                  for lang in owners}})
    shared = [{"layer": int(layer), "expert": int(e),
               "min_freq": round(float(freq[:, layer, e].min()), 3),
               "all": bool(c["shared_all"][layer, e])}
              for layer, e in zip(*np.nonzero(c["shared_most"]))]
    one_lang = c["specific"] & (spec_langs.sum(0) == 1)
    return {
        "per_layer": {
            "shared_all": c["shared_all"].sum(1).tolist(),
            "shared_most": c["shared_most"].sum(1).tolist(),
            "specific": c["specific"].sum(1).tolist(),
            "specific_one_language": one_lang.sum(1).tolist(),
            "high_mean_per_language": c["high"].sum(2).mean(0).round(2).tolist(),
        },
        "high_per_language_layer": {lang: c["high"][i].sum(1).tolist() for i, lang in enumerate(langs)},
        "specific_per_language": {lang: int(spec_langs[i].sum()) for i, lang in enumerate(langs)},
        "specific_experts": specific,
        "shared_experts": shared,
        "n_layers": L,
    }


# ------------------------------------------------------------------ languages

def similarity(vectors: np.ndarray) -> np.ndarray:
    """[Lang, D] -> [Lang, Lang] cosine similarity after centring every dimension."""
    v = np.nan_to_num(vectors.astype(np.float64))
    v = v - v.mean(0, keepdims=True)
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    v = v / np.where(norm > 0, norm, 1)
    return np.clip(v @ v.T, -1, 1)


def linkage(sim: np.ndarray) -> np.ndarray:
    from scipy.cluster.hierarchy import linkage as _linkage
    from scipy.spatial.distance import squareform

    d = 1 - sim
    np.fill_diagonal(d, 0)
    d = (d + d.T) / 2
    return _linkage(squareform(np.clip(d, 0, None), checks=False), method="average")


def adjusted_rand_index(a, b) -> float:
    """ARI of two labellings (Hubert & Arabie 1985)."""
    _, ai = np.unique(np.asarray(a), return_inverse=True)
    _, bi = np.unique(np.asarray(b), return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(table, (ai, bi), 1)
    comb = lambda x: x * (x - 1) / 2  # noqa: E731
    sum_ij = comb(table).sum()
    sum_a, sum_b = comb(table.sum(1)).sum(), comb(table.sum(0)).sum()
    expected = sum_a * sum_b / comb(len(ai)) if len(ai) > 1 else 0.0
    top = (sum_a + sum_b) / 2
    return 1.0 if top == expected else float((sum_ij - expected) / (top - expected))


def nn_same_label(sim: np.ndarray, labels: list[str]) -> float:
    """Share of languages whose most similar other language has the same label (only
    languages that have a same-label relative in the set can score)."""
    labels = np.asarray(labels)
    s = sim.copy()
    np.fill_diagonal(s, -np.inf)
    nn = s.argmax(1)
    has_rel = np.array([(labels == x).sum() > 1 for x in labels])
    if not has_rel.any():
        return float("nan")
    return float((labels[nn] == labels)[has_rel].mean())


def cluster_ari(link: np.ndarray, labels: list[str]) -> float:
    from scipy.cluster.hierarchy import fcluster

    k = len(set(labels))
    return adjusted_rand_index(fcluster(link, k, criterion="maxclust"), labels)


def agreement(sim: np.ndarray, labels: list[str]) -> dict:
    link = linkage(sim)
    return {"nn_same": nn_same_label(sim, labels), "ari": cluster_ari(link, labels)}


def shuffled_agreement(sim: np.ndarray, labels: list[str], real: dict, n: int = SHUFFLES,
                       seed: int = 0) -> dict:
    """The same numbers with the labels shuffled over languages `n` times: mean, 95th
    percentile, and p = share of shuffles at least as good as the real labels."""
    rng = np.random.default_rng(seed)
    link = linkage(sim)
    nn, ari = [], []
    for _ in range(n):
        perm = list(rng.permutation(np.asarray(labels)))
        nn.append(nn_same_label(sim, perm))
        ari.append(cluster_ari(link, perm))
    nn, ari = np.array(nn), np.array(ari)
    return {"nn_same": float(nn.mean()), "nn_same_p95": float(np.percentile(nn, 95)),
            "nn_same_p": float((nn >= real["nn_same"] - 1e-12).mean()),
            "ari": float(ari.mean()), "ari_p95": float(np.percentile(ari, 95)),
            "ari_p": float((ari >= real["ari"] - 1e-12).mean()), "shuffles": n}


def family_agreement(vectors: dict[str, np.ndarray], label_sets: dict[str, list[str]]) -> dict:
    """{label kind: {vector kind: agreement}} plus shuffled labels on the first vector kind."""
    out = {}
    first = next(iter(vectors))
    for kind, labels in label_sets.items():
        if len(set(labels)) < 2 or len(labels) < 3:
            continue
        res = {name: agreement(similarity(v), labels) for name, v in vectors.items()}
        res["shuffled"] = shuffled_agreement(similarity(vectors[first]), labels, res[first])
        out[kind] = res
    return out

"""The `search` schedule: exact budget, never worse than its uniform start, better than a bad
allocation — on a synthetic fitness and on a tiny model."""
from __future__ import annotations

import pytest
import torch

from babel_edge.models import load_model
from babel_edge.prune import PruneOptions, prune_loaded
from babel_edge.prune.search import SearchSettings, evolve

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("BABEL_EDGE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_evolve_keeps_the_budget_and_finds_the_sensitive_layers():
    # layer i loses sens[i] / width: the best allocation gives sensitive layers more width
    sens = [1.0, 8.0, 1.0, 4.0, 1.0, 1.0]
    fitness = lambda w, n: sum(s / x for s, x in zip(sens, w))  # noqa: E731
    start = [128] * 6
    res = evolve(fitness, start, [32] * 6, [256] * 6, 32,
                 SearchSettings(generations=40, offspring=8, survivors=2, seed=1))
    assert sum(res.widths) == sum(start) and all(w % 32 == 0 for w in res.widths)
    assert all(32 <= w <= 256 for w in res.widths)
    assert res.fitness < res.start_fitness and res.history == sorted(res.history, reverse=True)
    assert res.widths[1] == max(res.widths) and res.widths[3] > 128
    bad = [256, 32, 256, 32, 128, 64]                 # most width where it matters least
    assert sum(bad) == sum(start) and res.fitness < fitness(bad, 0)


def test_search_on_a_tiny_model(tiny_dirs, tmp_path):
    """A tiny model whose layer 1 FFN matters 8x more than the others: the search gives it more
    width than uniform, meets the budget exactly, and ends with a lower KL to the dense model
    than a deliberately bad allocation (layer 1 starved), on text the search never read."""
    from babel_edge.corpus import load_corpus
    from babel_edge.heal.data import training_text
    from babel_edge.heal.distill import teacher_topk
    from babel_edge.models.adapters import ffn_layers
    from babel_edge.prune.search import _kl

    corpus = load_corpus()
    src = load_model(str(tiny_dirs["llama"]))
    with torch.no_grad():
        ffn_layers(src.model)[1].down.weight.mul_(8.0)
    src.model.save_pretrained(tmp_path / "m")
    src.tokenizer.save_pretrained(tmp_path / "m")
    lm = load_model(str(tmp_path / "m"))
    texts_for = lambda l: corpus.texts(l, "profile")  # noqa: E731
    o = PruneOptions(strategy="magnitude", schedule="search", multiple_of=16, calib_tokens=512)
    model, plan = prune_loaded(lm, ["en", "de"], 0.5, o, texts_for=texts_for)
    assert plan.schedule == "search" and plan.search["widths"] == plan.widths
    assert sum(plan.widths) == 512 and all(w % 16 == 0 for w in plan.widths)
    assert plan.search["fitness_kl"] < plan.search["start_fitness_kl"]
    assert plan.widths[1] > 128
    text = training_text(["en", "de"], lambda l: corpus.texts(l, "eval"), lm.tokenizer, 64, 8 * 64)
    top = teacher_topk(lm.model, text.student, 32)
    bad, _ = prune_loaded(lm, ["en", "de"], 0.5, o.with_(schedule="uniform"), texts_for=texts_for,
                          widths=[176, 32, 176, 128])
    assert _kl(model, text.student, top) < _kl(bad, text.student, top)

"""Pruning: schedule math, physical removal, save/load round trip, compensation,
massive-neuron protection and strategies — on tiny models of every family, plus
one integration test on the embedded Gemma 3 270M."""
from __future__ import annotations

import math

import pytest
import torch

from babel_edge.errors import UserError
from babel_edge.models import ffn_layers, load_model
from babel_edge.prune import (PruneOptions, TargetStats, choose_experts, load_pruned, plan_pruning,
                              prune_loaded, target_stats)
from babel_edge.prune.calibration import compensate, massive_neurons
from babel_edge.prune.model_dir import ffn_widths, save_pruned, shrink_layer
from babel_edge.prune.schedule import budget, effective_share, layer_widths

LANGS = ["en", "de", "fr", "ru"]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    # calibration statistics are cached; keep the tests' out of the user's cache
    monkeypatch.setenv("BABEL_EDGE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def texts_for():
    from babel_edge.corpus import load_corpus

    corpus = load_corpus()
    return lambda lang: corpus.texts(lang, "profile")


@pytest.fixture(scope="session")
def llama(tiny_dirs):
    return load_model(str(tiny_dirs["llama"]))


@pytest.fixture(scope="session")
def llama_profile(llama, texts_for, tmp_path_factory):
    from babel_edge.profile import load_profile, profile_model, save_profile

    prof = profile_model(llama, LANGS, texts_for, tokens_per_lang=384, min_tokens=64,
                         expert_size=16, max_len=128)
    path = tmp_path_factory.mktemp("profile") / "tiny.safetensors"
    save_profile(prof, path)
    return load_profile(path, llama.fingerprint)


def _ids(tokenizer, text="The capital of France is Paris. Москва — столица России."):
    return torch.tensor([tokenizer(text)["input_ids"]])


# ------------------------------------------------------------------ schedule

@pytest.mark.parametrize("rate", [0.1, 0.25, 0.5, 0.7])
def test_schedule_meets_budget_exactly_within_bounds(rate):
    full = [2048] * 18
    g = [0.3 + 0.04 * i for i in range(18)]
    for signal in (None, g):
        w = layer_widths(full, rate, signal, unit=32, min_keep=0.1)
        assert sum(w) == budget(full, rate, 32) == round((1 - rate) * 36864 / 32) * 32
        assert all(x % 32 == 0 and 224 <= x <= 2048 for x in w)
    uni = layer_widths(full, rate, None, unit=32)
    assert max(uni) - min(uni) <= 32


def test_adaptive_gives_spread_layers_more_and_alpha_zero_is_uniform():
    full = [1024] * 6
    g = [0.9, 0.5, 0.7, 0.3, 0.8, 0.6]
    w = layer_widths(full, 0.5, g, unit=32)
    order = sorted(range(6), key=lambda i: g[i])
    assert [w[i] for i in order] == sorted(w)           # monotone in the signal
    assert len(set(w)) > 3
    assert layer_widths(full, 0.5, g, unit=32, alpha=0) == layer_widths(full, 0.5, None, unit=32)
    # a strong signal is clipped at the floor and at the full width, still meeting the budget
    w = layer_widths(full, 0.5, [1, 1e-6, 1, 1e-6, 1, 1e-6], unit=32, min_keep=0.25, alpha=3)
    assert w == [768, 256] * 3
    w = layer_widths(full, 0.5, [1, 1, 0.01, 0.01, 0.01, 0.01], unit=32, min_keep=0.25, alpha=3)
    assert w == [1024, 1024, 256, 256, 256, 256]


def test_schedule_errors():
    with pytest.raises(UserError, match="between 0 and 1"):
        layer_widths([256] * 4, 1.0)
    with pytest.raises(UserError, match="between 0 and 1"):
        layer_widths([256] * 4, 0.0)
    with pytest.raises(UserError, match="below the floor"):
        layer_widths([256] * 4, 0.99, unit=32)            # a width would reach zero
    with pytest.raises(UserError, match="multiple of 48"):
        layer_widths([256] * 4, 0.5, unit=48)


def test_effective_share():
    assert effective_share([1.0] * 8) == pytest.approx(1.0)
    assert effective_share([1.0] + [0.0] * 7) == pytest.approx(1 / 8)


# ------------------------------------------------------------------ physical removal

def test_removal_equals_zeroing_the_removed_neurons_every_family(tiny_dir, tmp_path):
    lm = load_model(str(tiny_dir))
    model = lm.model
    ids = _ids(lm.tokenizer)
    g = torch.Generator().manual_seed(0)
    widths = [64, 128, 96, 224]
    kept = [torch.sort(torch.randperm(256, generator=g)[:w]).values for w in widths]
    with torch.no_grad():
        for v, k in zip(ffn_layers(model), kept):          # reference: zero what will go
            drop = torch.ones(v.width, dtype=torch.bool)
            drop[k] = False
            v.down.weight[:, drop] = 0
        ref = model(ids).logits
        n_before = sum(p.numel() for p in model.parameters())
        for i, k in enumerate(kept):
            shrink_layer(model, i, k)
        out = model(ids).logits
    assert torch.allclose(ref, out, atol=1e-5)
    assert ffn_widths(model) == widths
    hidden = model.config.hidden_size
    assert n_before - sum(p.numel() for p in model.parameters()) == 3 * hidden * (1024 - sum(widths))
    # save -> load_pruned (and load_model) give the same logits; generate works
    save_pruned(model, tmp_path / "p", None, source_dir=lm.path)
    loaded = load_model(str(tmp_path / "p")).model          # load_model -> load_pruned
    assert ffn_widths(loaded) == widths
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, out)
    gen = loaded.generate(ids, max_new_tokens=4, do_sample=False,
                          pad_token_id=lm.tokenizer.pad_token_id)
    assert gen.shape[1] == ids.shape[1] + 4


def test_dense_model_saved_the_same_way_loads_the_same_way(tiny_dirs, tmp_path):
    lm = load_model(str(tiny_dirs["gemma3_text"]))
    save_pruned(lm.model, tmp_path / "dense", None, source_dir=lm.path)
    assert (tmp_path / "dense" / "tokenizer.json").exists()
    m = load_pruned(tmp_path / "dense")
    ids = _ids(lm.tokenizer)
    with torch.no_grad():
        assert torch.equal(m(ids).logits, lm.model(ids).logits)
    # uniform widths: stock transformers loads it too
    from transformers import AutoModelForCausalLM
    m2 = AutoModelForCausalLM.from_pretrained(tmp_path / "dense")
    with torch.no_grad():
        assert torch.equal(m2(ids).logits, lm.model(ids).logits)


def test_save_refuses_to_overwrite_a_foreign_directory(tiny_dirs, tmp_path):
    lm = load_model(str(tiny_dirs["llama"]))
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a pruned-model directory"):
        save_pruned(lm.model, tmp_path / "x", None, source_dir=lm.path)
    assert (tmp_path / "x" / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------------ compensation

def test_compensation_is_the_least_squares_refit():
    g = torch.Generator().manual_seed(0)
    F, H, N = 48, 16, 4000
    mix = torch.randn(F, F, generator=g) / F ** 0.5
    a = torch.randn(N, F, generator=g) @ (torch.eye(F) + mix)      # correlated neurons
    C = (a.T @ a / N).float()
    W = torch.randn(H, F, generator=g)
    K = torch.arange(0, F, 2)
    refit = compensate(W, C, K, ridge=0.0)
    err = lambda Wk: ((a @ W.T - a[:, K] @ Wk.T) ** 2).mean().item()  # noqa: E731
    assert err(refit) < 0.7 * err(W[:, K])
    # against numpy's least squares
    import numpy as np
    ref = np.linalg.lstsq(a[:, K].double().numpy(), (a @ W.T).double().numpy(), rcond=None)[0].T
    assert np.allclose(refit.numpy(), ref, atol=1e-3)
    # keeping everything changes nothing (ridge small)
    assert torch.allclose(compensate(W, C, torch.arange(F), ridge=1e-9), W, atol=1e-3)


def test_compensation_lowers_ffn_error_on_calibration_text(llama, llama_profile, texts_for):
    from babel_edge.prune.calibration import calibrate

    cal = calibrate(llama.model, llama.tokenizer, llama.fingerprint, texts_for, ["en", "de"], 512)
    plan = plan_pruning(llama.model, ["en", "de"], 0.5, PruneOptions(strategy="mass", schedule="uniform"),
                        stats=target_stats(llama_profile, ["en", "de"]), calibration=cal)
    v = ffn_layers(llama.model)[1]
    C = cal.second[1].double()
    K = torch.tensor(plan.kept[1])
    W = v.down.weight.detach().double()

    def err(Wk):   # E || W a - Wk a_K ||^2 from second moments only
        D = torch.zeros_like(W)
        D += W
        D[:, K] -= Wk
        return float(torch.einsum("hf,fg,hg->", D, C, D))

    assert err(compensate(v.down.weight, cal.second[1], K).double()) < 0.8 * err(W[:, K])
    # the cache returns the same numbers
    again = calibrate(llama.model, llama.tokenizer, llama.fingerprint, texts_for, ["de", "en"], 512)
    assert again.key == cal.key and torch.equal(again.second[1], cal.second[1])


def _second(a: torch.Tensor) -> torch.Tensor:
    return (a.T @ a / len(a)).float()


def test_ridge_is_chosen_on_held_out_text():
    """The chosen ridge is the grid value whose refit (on the fit text) reproduces the layer
    output best on the held-out text, measured here on the held-out activations themselves;
    little fit text (overfitting) asks for a larger ridge than plenty does."""
    from babel_edge.prune.calibration import choose_ridges
    from babel_edge.prune.options import RIDGE_GRID

    g = torch.Generator().manual_seed(1)
    F, H = 64, 16
    mix = torch.randn(F, F, generator=g) * 0.3
    draw = lambda n: torch.randn(n, F, generator=g) @ (torch.eye(F) + mix)  # noqa: E731
    W = torch.randn(H, F, generator=g)
    K = torch.arange(0, F, 2)
    held = draw(4000)
    chosen = {}
    for n_fit in (40, 8000):
        fit = draw(n_fit)
        ridges, errors = choose_ridges([W], [K], [_second(fit)], [_second(held)])
        direct = {r: float(((held @ W.T - held[:, K] @ compensate(W, _second(fit), K, r).T) ** 2)
                           .sum(1).mean()) for r in RIDGE_GRID}
        assert ridges[0] == min(direct, key=direct.get)
        plain = float(((held @ W.T - held[:, K] @ W[:, K].T) ** 2).sum(1).mean())
        assert errors[0][f"{ridges[0]:g}"] == pytest.approx(direct[ridges[0]] / plain, rel=1e-3)
        chosen[n_fit] = ridges[0]
    assert chosen[40] > chosen[8000]


def test_ridge_held_out_domain_is_never_fit_on():
    from babel_edge.corpus import load_corpus
    from babel_edge.prune.run import ridge_texts

    corpus = load_corpus()
    langs = ["en", "de", "fr"]
    fit_for, held_for, held = ridge_texts(corpus, langs)
    unseen = corpus.unseen_domain(langs)
    for l in langs:
        assert held[l] not in (unseen, None) and held[l] in corpus.domains(l)
        fit, val = set(fit_for(l)), set(held_for(l))
        assert val == set(corpus.texts(l, "profile", domains=[held[l]])) and val
        assert fit and not fit & val
        assert not fit & set(corpus.texts(l, "profile", domains=[unseen]))
        assert not (fit | val) & set(corpus.texts(l, "eval"))


def test_prune_records_the_ridge_choice(llama, llama_profile, texts_for, capsys):
    from babel_edge.cli.prune import print_plan
    from babel_edge.corpus import load_corpus
    from babel_edge.prune.run import ridge_texts

    split = ridge_texts(load_corpus(), ["en", "de"])
    o = PruneOptions(schedule="uniform", calib_tokens=512, multiple_of=8)
    model, plan = prune_loaded(llama, ["en", "de"], 0.5, o, profile=llama_profile,
                               texts_for=texts_for, ridge_split=split)
    comp = plan.compensation
    assert len(comp["ridge"]) == 4 and set(comp["ridge"]) <= set(comp["ridge_choice"]["grid"])
    assert comp["ridge_choice"]["held_out_domains"] == split[2]
    for i, errs in comp["ridge_choice"]["relative_error"].items():    # the argmin, recorded
        assert errs[f"{comp['ridge'][int(i)]:g}"] == min(errs.values())
    # the printed plan shows each layer's ridge and where it was chosen
    capsys.readouterr()
    print_plan(plan)
    shown = capsys.readouterr().out
    assert "held-out fitting domain (" + ", ".join(f"{l}: {d}" for l, d in split[2].items()) \
        in " ".join(shown.split())                      # (the console wraps long lines)
    rows = [line for line in shown.splitlines() if "/" in line and "%" in line]
    assert len(rows) == 4 and all(line.split()[-2] == f"{r:g}" for line, r in zip(rows, comp["ridge"]))
    # a given ridge is used as given; without a held-out domain the fixed default
    _, fixed = prune_loaded(llama, ["en", "de"], 0.5, o.with_(ridge=0.05), profile=llama_profile,
                            texts_for=texts_for, ridge_split=split)
    assert fixed.compensation["ridge"] == 0.05 and fixed.compensation["ridge_choice"]["rule"] == "given"
    _, none = prune_loaded(llama, ["en", "de"], 0.5, o, profile=llama_profile, texts_for=texts_for)
    assert none.compensation["ridge"] == 1e-3 and "no fitting domain" in none.compensation["ridge_choice"]["rule"]


# ------------------------------------------------------------------ strategies & massive neurons

def test_massive_neuron_detection():
    m = torch.full((256,), 0.1)
    m[[3, 77]] = torch.tensor([5.0, 2.5])      # 50x and 25x the median
    m[9] = 1.5                                 # 15x: not massive
    assert massive_neurons(m).tolist() == [3, 77]


def _planted_stats(model, massive_ids):
    """Stats where the planted 'massive' neurons look useless to every strategy."""
    L, F = len(ffn_layers(model)), ffn_widths(model)[0]
    freq = [torch.linspace(1, 0.01, F) for _ in range(L)]
    mass = [torch.linspace(1, 0.01, F) for _ in range(L)]
    for f, m in zip(freq, mass):
        f[massive_ids] = 0.0
        m[massive_ids] = 0.0
    experts = [torch.arange(F).reshape(-1, 16) for _ in range(L)]
    efreq = [f.reshape(-1, 16).mean(1) for f in freq]
    return TargetStats(["en"], freq, mass, efreq, experts,
                       [torch.tensor(massive_ids) for _ in range(L)], 16)


@pytest.mark.parametrize("strategy", ["mass", "frequency", "magnitude", "random"])
def test_massive_neurons_survive_every_strategy_but_random(llama, strategy):
    planted = [250, 251, 252, 253, 254, 255]
    stats = _planted_stats(llama.model, planted)
    plan = plan_pruning(llama.model, ["en"], 0.75, PruneOptions(strategy=strategy, schedule="uniform",
                                                                 seed=3), stats=stats)
    for k in plan.kept:
        assert len(k) == 64
        survived = torch.isin(torch.tensor(planted), torch.tensor(k)).all().item()
        assert survived == (strategy != "random")
    if strategy == "frequency":      # otherwise the highest-frequency neurons
        assert plan.kept[0][:58] == list(range(58))


def test_random_is_seeded_and_expert_granularity_keeps_whole_experts(llama, llama_profile):
    stats = target_stats(llama_profile, ["en", "de"])
    rnd = lambda seed: PruneOptions(strategy="random", schedule="uniform", seed=seed)  # noqa: E731
    a = plan_pruning(llama.model, ["en"], 0.5, rnd(1), stats=stats)
    b = plan_pruning(llama.model, ["en"], 0.5, rnd(1), stats=stats)
    c = plan_pruning(llama.model, ["en"], 0.5, rnd(2), stats=stats)
    assert a.kept == b.kept
    assert a.kept != c.kept
    for strategy in ("frequency", "mass"):
        p = plan_pruning(llama.model, ["en", "de"], 0.5, PruneOptions(
            strategy=strategy, granularity="expert", schedule="uniform"), stats=stats)
        for k, ex in zip(p.kept, stats.experts):
            whole = torch.isin(ex, torch.tensor(k))
            assert (whole.all(1) | ~whole.any(1)).all()      # every expert fully in or fully out
    # the most frequent experts of the targets are the ones kept
    f = stats.expert_freq[0]
    k = choose_experts(f, stats.experts[0], 64, None)
    top = torch.sort(-f.double(), stable=True).indices[:4]
    assert torch.equal(k, torch.sort(stats.experts[0][top].reshape(-1)).values)


def test_prune_loaded_end_to_end_plan_and_widths(llama, llama_profile, texts_for, tmp_path):
    model, plan = prune_loaded(llama, ["en", "de"], 0.5, PruneOptions(
        schedule="adaptive", calib_tokens=512, multiple_of=8, alpha=4.0), profile=llama_profile,
        texts_for=texts_for)
    widths = plan.widths
    assert sum(widths) == 512 and len(set(widths)) > 1           # adaptive: widths differ
    assert ffn_widths(model) == widths and ffn_widths(llama.model) == [256] * 4   # copy
    assert plan.target_langs == ["en", "de"] and plan.compensation["on"]
    assert "entropy" in plan.schedule_formula
    assert plan.provenance["source_fingerprint"] == llama.fingerprint
    assert plan.provenance["profile"]["sha256"]
    assert plan.params["ffn_after"] == plan.params["ffn_before"] // 2
    out = save_pruned(model, tmp_path / "pruned", plan, source_dir=llama.path)
    again = load_model(str(out))
    ids = _ids(llama.tokenizer)
    with torch.no_grad():
        assert torch.equal(again.model(ids).logits, model(ids).logits)
    assert again.fingerprint != llama.fingerprint


def test_bad_input_is_refused(llama, llama_profile, tiny_dirs, texts_for):
    with pytest.raises(UserError, match="not in this profile"):
        prune_loaded(llama, ["en", "zh"], 0.5, profile=llama_profile, texts_for=texts_for)
    with pytest.raises(UserError, match="between 0 and 1"):
        prune_loaded(llama, ["en"], 1.2, profile=llama_profile, texts_for=texts_for)
    other = load_model(str(tiny_dirs["qwen2"]))
    with pytest.raises(UserError, match="another model"):
        prune_loaded(other, ["en"], 0.5, profile=llama_profile, texts_for=texts_for)
    with pytest.raises(UserError, match="--profile"):
        plan_pruning(llama.model, ["en"], 0.5, PruneOptions(strategy="mass", schedule="uniform"),
                     stats=None)


# ------------------------------------------------------------------ the real model

@pytest.mark.integration
def test_embedded_prune_round_trip(embedded, texts_for, tmp_path):
    from babel_edge.evaluate import hf_tokenize, score_language, torch_scorer
    from babel_edge.profile import profile_model

    prof = profile_model(embedded, ["en"], texts_for, tokens_per_lang=512, min_tokens=256)
    model, plan = prune_loaded(embedded, ["en"], 0.5, PruneOptions(schedule="adaptive", calib_tokens=2048), profile=prof,
                               texts_for=texts_for)
    widths = plan.widths
    assert sum(widths) == 18 * 1024 and len(set(widths)) > 1
    assert sum(len(l.massive) for l in plan.layers) > 0
    out = save_pruned(model, tmp_path / "g", plan, source_dir=embedded.path)
    assert (out / "GEMMA_TERMS.html").exists()                 # the licence travels with the weights
    m = load_pruned(out)
    ids = _ids(embedded.tokenizer, "The capital of France is")
    with torch.no_grad():
        assert torch.equal(m(ids).logits, model(ids).logits)
    assert m.generate(ids, max_new_tokens=3, do_sample=False).shape[1] == ids.shape[1] + 3
    from babel_edge.corpus import load_corpus
    ev = load_corpus().texts("en", "eval")
    tok = hf_tokenize(embedded.tokenizer)
    dense = score_language("en", ev, tok, torch_scorer(embedded.model), max_bytes=1200)
    pruned = score_language("en", ev, tok, torch_scorer(m), max_bytes=1200)
    # measured ×4.7 at this small profile/calibration budget (512 / 2048 tokens, one language);
    # a broken refit or selection lands at ×10^2 and beyond
    assert math.isfinite(pruned.ppl) and pruned.ppl < 6 * dense.ppl

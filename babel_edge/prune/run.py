"""Prune end to end: load → calibrate → plan → cut (+ compensate) → trim vocabulary → save.

    prune_loaded(lm, langs, rate, options, profile=..., texts_for=...)   # -> (model, PruningPlan)
    prune(model_spec, profile_path, langs, rate, out_dir, options=...)   # what `babel-edge prune` does

Compensation (calibration.compensate, on by default): after the kept neurons K are
chosen, the kept down-projection columns are refit by least squares on calibration
activations of the target languages, so each layer's FFN output is preserved as well
as K allows. No inference cost. Its ridge (`--ridge auto`, the default) is chosen per layer
on text the fit did not read: refit on the fitting domains but one, keep the grid value
that reproduces the layer output best on the held-out one (ridge_texts, choose_ridge),
then refit on every fitting domain with it.
"""
from __future__ import annotations

import copy as _copy
from pathlib import Path
from typing import Callable, Sequence

import torch

from .. import __version__
from ..errors import UserError
from ..models.adapters import ffn_layers
from ..provenance import now_utc
from . import calibration as calib
from .model_dir import check_out_dir, ffn_params, save_pruned, shrink_layer
from .options import PruneOptions, check_rate
from .plan import PruningPlan
from .select import plan_pruning, target_stats

COMPENSATION_FORMULA = ("W_K = W C[:, K] (C[K, K] + lam I)^-1, C = E[a a^T] over calibration "
                        "tokens, lam = ridge * mean(diag C[K, K])")


def apply_plan(model, plan: PruningPlan, calibration: calib.Calibration | None = None,
               ridge: float | Sequence[float] = calib.RIDGE) -> None:
    """Cut every layer to its kept neurons, in place; refit down columns when `calibration` is
    given, with `ridge` (one for all layers, or one per layer)."""
    views = ffn_layers(model)
    if [v.width for v in views] != plan.widths_before:
        raise ValueError("the plan was made for a model with other FFN widths")
    ridges = [float(ridge)] * len(views) if isinstance(ridge, (int, float)) else list(ridge)
    for v in views:
        k = torch.tensor(plan.layers[v.index].kept, dtype=torch.long)
        down = None
        if calibration is not None:
            down = calib.compensate(v.down.weight, calibration.second[v.index], k, ridges[v.index])
        shrink_layer(model, v.index, k, down)


# Where the held-out domain of the ridge choice comes from, per language: the first of these
# among the language's fitting domains (never the run's unseen domain).
RIDGE_HELD_OUT_PREFERENCE = ("fortunes", "scripture", "handbook", "udhr")


def ridge_texts(corpus, langs: Sequence[str]):
    """(fit_for, held_for, held) for choosing the compensation ridge on a held-out domain:
    per language, `held[lang]` is a fitting domain (RIDGE_HELD_OUT_PREFERENCE first, then the
    smallest other) that fit_for(lang) leaves out and held_for(lang) is. None when some
    language has fewer than two fitting domains with profile text."""
    if not hasattr(corpus, "unseen_domain"):
        return None
    unseen = corpus.unseen_domain(langs)
    held = {}
    for l in langs:
        have = [d for d in corpus.domains(l) if d != unseen and corpus.texts(l, "profile", domains=[d])]
        if len(have) < 2:
            return None
        size = {d: sum(map(len, corpus.texts(l, "profile", domains=[d]))) for d in have}
        order = [d for d in RIDGE_HELD_OUT_PREFERENCE if d in have] + \
            sorted((d for d in have if d not in RIDGE_HELD_OUT_PREFERENCE), key=lambda d: (size[d], d))
        held[l] = order[0]
    skip = lambda l: tuple(d for d in (unseen, held[l]) if d)  # noqa: E731
    return (lambda l: corpus.texts(l, "profile", exclude=skip(l)),
            lambda l: corpus.texts(l, "profile", domains=[held[l]]), held)


def choose_ridge(lm, plan: PruningPlan, o: PruneOptions, langs: Sequence[str], split=None
                 ) -> tuple[float | list[float], dict]:
    """The compensation ridge(s) and how they were chosen: o.ridge when given; else per layer on
    a held-out domain (`split` from ridge_texts; calibration.choose_ridges); else RIDGE."""
    if o.ridge is not None:
        return o.ridge, {"rule": "given"}
    if split is None:
        return calib.RIDGE, {"rule": f"fixed {calib.RIDGE:g}: no fitting domain could be held out"}
    fit_for, held_for, held = split
    fit = calib.calibrate(lm.model, lm.tokenizer, lm.fingerprint, fit_for, langs, o.calib_tokens,
                          label="calibrating for the ridge (fitting domains but one)")
    val = calib.calibrate(lm.model, lm.tokenizer, lm.fingerprint, held_for, langs, o.calib_tokens,
                          label="calibrating for the ridge (held-out domain)")
    views = ffn_layers(lm.model)
    pruned = [v for v in views if len(plan.layers[v.index].kept) < v.width]
    chosen, errors = calib.choose_ridges(
        [v.down.weight for v in pruned],
        [torch.tensor(plan.layers[v.index].kept, dtype=torch.long) for v in pruned],
        [fit.second[v.index] for v in pruned], [val.second[v.index] for v in pruned])
    ridges = [calib.RIDGE] * len(views)
    for v, r in zip(pruned, chosen):
        ridges[v.index] = r
    return ridges, {
        "rule": "per layer, the ridge of the grid whose refit on the fitting domains but one "
                "keeps the layer's output best on the held-out one (E||W a - W_K a_K||^2, "
                "relative to no refit); the final refit uses every fitting domain",
        "held_out_domains": held, "grid": list(calib.RIDGE_GRID),
        "fit_tokens": fit.n_tokens, "held_out_tokens": val.n_tokens,
        "relative_error": {str(v.index): e for v, e in zip(pruned, errors)}}


def _provenance(lm, profile) -> dict:
    from ..io import sha256_file

    prof_path = getattr(profile, "path", None)
    return {
        "source_model": str(getattr(lm, "spec", "")), "source_path": str(getattr(lm, "path", "")),
        "source_fingerprint": lm.fingerprint,
        "profile": None if profile is None else {
            "path": str(prof_path) if prof_path else None,
            "sha256": sha256_file(prof_path) if prof_path and Path(prof_path).is_file() else None,
            "fingerprint": profile.fingerprint, "experts": profile.header.get("experts", {}).get("digest")},
        "babel_edge_version": __version__, "torch": torch.__version__,
        "transformers": __import__("transformers").__version__, "created": now_utc(),
    }


def prune_loaded(lm, langs: Sequence[str], rate: float, options: PruneOptions = PruneOptions(), *,
                 profile=None, texts_for: Callable[[str], Sequence[str]] | None = None,
                 calibration: calib.Calibration | None = None, widths: Sequence[int] | None = None,
                 copy: bool = True, search_progress=None, ridge_split=None):
    """Prune a LoadedModel-like `lm` (model, tokenizer, fingerprint, ...) for `langs`.

    texts_for(lang) gives the calibration text (never evaluation text); ridge_split
    (ridge_texts) the held-out domain the compensation ridge is chosen on. Returns
    (model, PruningPlan); with copy=True the loaded model is left untouched.
    The vocabulary is not trimmed here (see `prune`, which has the corpus).
    """
    langs = list(dict.fromkeys(langs))
    if not langs:
        raise UserError("no target languages; give --langs (e.g. --langs en,de,fr)")
    check_rate(rate, allow_zero=True)
    o = options.validate()
    if rate == 0:                        # no FFN pruning: the record of an unpruned model
        model = _copy.deepcopy(lm.model) if copy else lm.model
        plan = PruningPlan.unpruned([v.width for v in ffn_layers(model)], langs)
        n = sum(p.numel() for p in model.parameters())
        plan.params = {"ffn_before": ffn_params(model), "ffn_after": ffn_params(model),
                       "total_before": n, "total_after": n}
        plan.provenance = _provenance(lm, profile)
        return model, plan
    if profile is not None and profile.fingerprint != lm.fingerprint:
        raise UserError(f"the profile was measured on another model (fingerprint "
                        f"{profile.fingerprint}), not this one ({lm.fingerprint}); profile this "
                        f"model with 'babel-edge profile'")
    stats = target_stats(profile, langs) if profile is not None else None
    need_cal = o.compensate or o.strategy != "random" or o.schedule == "search"
    if calibration is None and need_cal and texts_for is not None:
        calibration = calib.calibrate(lm.model, lm.tokenizer, lm.fingerprint, texts_for, langs,
                                      o.calib_tokens)
    if o.compensate and calibration is None:
        raise UserError("compensation needs calibration text of the target languages; give a "
                        "corpus or use --no-compensate")
    searched = None
    if widths is None and o.schedule == "search":
        if texts_for is None:
            raise UserError("the search schedule scores candidates on calibration text of the "
                            "target languages; give a corpus or use --schedule adaptive")
        from .search import SEARCH_FORMULA, search_widths

        searched = search_widths(lm, langs, rate, o, stats=stats, calibration=calibration,
                                 texts_for=texts_for, progress=search_progress)
        widths = searched.widths
    plan = plan_pruning(lm.model, langs, rate, o, stats=stats, calibration=calibration, widths=widths)
    if searched is not None:
        plan.search, plan.schedule_formula = searched.to_dict(), SEARCH_FORMULA
    ridge, ridge_choice = choose_ridge(lm, plan, o, langs, ridge_split) if o.compensate else (None, {})
    model = _copy.deepcopy(lm.model) if copy else lm.model
    total_before, ffn_before = sum(p.numel() for p in model.parameters()), ffn_params(model)
    apply_plan(model, plan, calibration if o.compensate else None, ridge if o.compensate else calib.RIDGE)
    plan.compensation = ({"on": True, "ridge": ridge, "ridge_choice": ridge_choice,
                          "formula": COMPENSATION_FORMULA} if o.compensate else {"on": False})
    plan.calibration = None if calibration is None else {
        **calibration.meta(), "split": "profile", "note": "first paragraphs of each target "
        "language's profile split, equal tokens per language, BOS positions included"}
    plan.params = {"ffn_before": ffn_before, "ffn_after": ffn_params(model),
                   "total_before": total_before,
                   "total_after": sum(p.numel() for p in model.parameters())}
    plan.provenance = _provenance(lm, profile)
    return model, plan


def fitting_texts(corpus, langs: Sequence[str]) -> Callable[[str], list[str]]:
    """The text a run may fit on for a language: its profile split — of every domain but the one
    held out as unseen for these languages, when the corpus has domains."""
    unseen = corpus.unseen_domain(langs) if hasattr(corpus, "unseen_domain") else None
    if unseen:
        return lambda l: corpus.texts(l, "profile", exclude=(unseen,))
    return lambda l: corpus.texts(l, "profile")


def target_scripts(langs: Sequence[str]) -> list[str]:
    """The Unicode scripts (ISO 15924) the target languages are written in ("ja" -> Hani,
    Hira, Kana). A language outside the table contributes none: its text decides alone."""
    from ..corpus import get_language

    out: list[str] = []
    for l in langs:
        try:
            out.extend(get_language(l).unicode_scripts)
        except (KeyError, ValueError, LookupError):
            continue
    return list(dict.fromkeys(s for s in out if s))


def prune(model: str | None, profile: str | Path | None, langs: Sequence[str], rate: float,
          out: str | Path, *, corpus: str | None = None,
          options: PruneOptions = PruneOptions(), other_langs: Sequence[str] | None = None,
          heal_progress=None) -> tuple[Path, PruningPlan]:
    """Load, prune, save: what `babel-edge prune` does. Returns (directory, plan).

    Everything cheap is checked before the model loads: the options, the rate, the output
    path, the profile file and its languages, the corpus and the --vocab-text files.
    With options.heal the cut model is healed against the dense one (babel_edge.heal;
    heal_progress gets its progress); with options.trim_vocab the vocabulary is then trimmed
    to the target languages (babel_edge.vocab); the plan records both."""
    from ..corpus import load_corpus, load_user_corpus
    from ..evaluate import DEFAULT_OTHER_LANGS
    from ..models import load_model
    from ..profile import load_profile
    from ..vocab import read_user_text, trim_loaded

    o = options.validate()
    check_rate(rate, allow_zero=o.trim_vocab)
    if o.needs_profile and not profile and rate > 0:
        raise UserError(f"--profile is needed for --strategy {o.strategy}, --schedule "
                        f"{o.schedule} and --granularity {o.granularity}; create one with "
                        f"'babel-edge profile' (or use --strategy magnitude|random --schedule uniform)")
    out = Path(out).expanduser()
    check_out_dir(out)
    user_text = read_user_text(o.vocab_text)          # bad files fail before the model loads
    prof = load_profile(profile) if profile else None
    corp = load_user_corpus(corpus, langs) if corpus else load_corpus()
    from ..corpus import parse_langs

    langs = parse_langs(langs, corp)                  # the corpus's own tags (zh -> zh-Hans)
    for code in langs:
        if prof is not None:
            prof.lang_index(code)
        fitting_texts(corp, langs)(code)              # a language the corpus lacks fails here
    heal_text = read_user_text(o.heal_text)
    lm = load_model(model)
    if prof is not None and prof.fingerprint != lm.fingerprint:
        load_profile(profile, model_fingerprint=lm.fingerprint)    # raises the clear message
    from .. import distributed as dd

    fit = fitting_texts(corp, langs)
    pruned, plan = prune_loaded(lm, langs, rate, o, profile=prof, texts_for=fit,
                                copy=o.heal is not None, ridge_split=ridge_texts(corp, langs))   # calibration runs on every process
    if o.heal is not None:               # before trimming: the dense model reads the same ids
        from ..heal.data import training_text
        from ..heal.run import heal_loaded

        text = training_text(langs, fit, lm.tokenizer, o.heal.seq_len,
                             o.heal.tokens, heal_text)
        plan.healing = heal_loaded(lm.model, pruned, text, o.heal, progress=heal_progress)
    if not dd.is_main():                 # under torchrun: rank 0 trims and writes
        return out, plan
    trimmed = None
    if o.trim_vocab:
        others = DEFAULT_OTHER_LANGS if other_langs is None else other_langs
        trimmed = trim_loaded(pruned, lm.tokenizer, langs, fit,
                              user_texts=user_text, model_dir=lm.path,
                              eval_for=lambda l: corp.texts(l, "eval"),
                              other_langs=[l for l in others if l in corp],
                              size=o.vocab_size, evidence=o.vocab_evidence,
                              scripts=target_scripts(langs))
        plan.vocab = trimmed.section
        plan.params["total_after"] = sum(p.numel() for p in pruned.parameters())
    path = save_pruned(pruned, out, plan, source_dir=lm.path, tokenizer=lm.tokenizer, vocab=trimmed)
    return path, plan

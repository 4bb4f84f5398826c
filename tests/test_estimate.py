"""estimate: what pruning gives before anything is built, and previews of existing profiles."""
import sys

import pytest

from babel_edge.errors import UserError
from babel_edge.estimate import (ModelShape, file_bytes, language_previews, model_shape,
                                 plan_estimate, sparkline)
from babel_edge.prune import schedule as prune_schedule
from babel_edge.prune.schedule import unit_for

SHAPE = ModelShape(name="m", hidden=64, ffn_widths=(256, 256, 256), vocab=100, params=200_000)


def test_import_is_light():
    import subprocess
    code = "import sys, babel_edge.estimate; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_uniform_estimate_is_the_schedule():
    est = plan_estimate(SHAPE, 0.5, "uniform", formats={"gguf": "q8_0", "onnx": None})
    assert list(est.widths) == prune_schedule.layer_widths(list(SHAPE.ffn_widths), 0.5, None, 32)
    assert est.kept_neurons == 384
    assert est.ffn_before == 3 * 64 * 768 and est.ffn_after == 3 * 64 * 384
    assert est.params_after == SHAPE.params - est.ffn_before + est.ffn_after
    assert list(est.sizes) == ["gguf q8_0"]
    assert est.sizes["gguf q8_0"] == (file_bytes(SHAPE.params, "gguf", "q8_0"),
                                      file_bytes(est.params_after, "gguf", "q8_0"))


def test_adaptive_without_profile_gives_totals_only():
    a = plan_estimate(SHAPE, 0.3, "adaptive")
    u = plan_estimate(SHAPE, 0.3, "uniform")
    assert a.widths is None and a.params_after == u.params_after
    b = plan_estimate(SHAPE, 0.3, "adaptive", signal=[0.2, 0.5, 0.9])
    assert sum(b.widths) == u.kept_neurons and b.widths[0] < b.widths[2]


@pytest.mark.parametrize("rate", [0.0, 1.0, 1.5, -0.1, float("nan"), 0.99])
def test_impossible_rates_are_user_errors(rate):
    with pytest.raises(UserError):
        plan_estimate(SHAPE, rate, "uniform")


def test_units_and_sparkline():
    assert unit_for("neuron") == 32 and unit_for("expert", expert_size=48) == 96
    with pytest.raises(UserError):
        unit_for("layer")
    assert sparkline([0, 0.5, 1]) == "▁▅█" and sparkline([]) == ""


def test_shape_and_previews_of_a_tiny_model(tiny_dirs, tmp_path):
    from babel_edge.corpus import load_corpus
    from babel_edge.models import load_model
    from babel_edge.profile import profile_model, save_profile

    lm = load_model(str(tiny_dirs["llama"]))
    shape = model_shape(lm.path)
    assert shape.params == lm.n_params
    assert list(shape.ffn_widths) == [v.width for v in __import__(
        "babel_edge.models", fromlist=["ffn_layers"]).ffn_layers(lm.model)]
    corpus = load_corpus()
    prof = profile_model(lm, ["en", "de", "ru"], lambda l: corpus.texts(l, "profile"),
                         tokens_per_lang=256, min_tokens=64)
    save_profile(prof, tmp_path / "a.profile.safetensors")
    assert language_previews("another-model", tmp_path).langs == {}
    pv = language_previews(lm.fingerprint, tmp_path)
    assert set(pv.langs) == {"en", "de", "ru"}
    for p in pv.langs.values():
        assert len(p.layer_share) == len(shape.ffn_widths) and isinstance(p.specific, int)
    near = pv.nearest("en", ["de", "ru"])
    assert near is not None and near[0] in ("de", "ru") and -1 <= near[1] <= 1
    assert pv.nearest("en", []) is None
    # the adaptive signal is prune's: expert frequencies averaged over the targets
    from babel_edge.prune import adaptive_signal, target_stats
    assert pv.signal(["en", "de"]) == pytest.approx(adaptive_signal(target_stats(prof, ["en", "de"])))
    assert pv.signal(["en", "fr"]) is None

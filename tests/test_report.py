"""Report on profiles of the planted tiny model, the analysis maths, and the CLI."""
import json

import numpy as np
import pytest
import torch

from babel_edge.profile import load_profile, profile_model, save_profile
from babel_edge.report import summarise, write_report
from babel_edge.report.analysis import (adjusted_rand_index, classify_experts, nn_same_label,
                                        normalised_entropy, similarity, thresholds_for)
from test_profile import GROUP, PLANT_LAYER, PLANTED, build_planted, language_texts


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# six languages in three "families": two per script, different text (seeds) in each
FAMILY_OF = {"xx": "Cyrillic-ish", "yy": "Han-ish", "zz": "Devanagari-ish"}
LANGS = ["xx1", "yy1", "zz1", "xx2", "yy2", "zz2"]


@pytest.fixture(scope="module")
def six(tmp_path_factory):
    lm, _ = build_planted()
    prof = profile_model(lm, LANGS, lambda c: language_texts(c[:2], seed=int(c[2])),
                         tokens_per_lang=500, min_tokens=100, expert_size=GROUP, max_len=32)
    for d in prof.header["languages"]:
        d["family"] = FAMILY_OF[d["code"][:2]]
        d["name"] = d["code"]
    path = save_profile(prof, tmp_path_factory.mktemp("prof") / "six.safetensors")
    return load_profile(path)


def test_report_recovers_planted_specific_and_shared_experts(six, tmp_path):
    s = write_report(six, tmp_path / "r")
    emap = six.expert_map
    specific = {(r["layer"], r["expert"]): set(r["langs"]) for r in s["specific_experts"]}
    for script in ("xx", "yy", "zz"):
        e = int(emap.assignment(PLANT_LAYER)[PLANTED[script][0]])
        assert specific[(PLANT_LAYER, e)] == {f"{script}1", f"{script}2"}
    e = int(emap.assignment(PLANT_LAYER)[PLANTED["shared"][0]])
    assert {"layer": PLANT_LAYER, "expert": e} in [{k: r[k] for k in ("layer", "expert")}
                                                   for r in s["shared_experts"] if r["all"]]
    assert (PLANT_LAYER, e) not in specific
    assert s["per_layer"]["shared_all"][PLANT_LAYER] >= 1
    assert s["per_layer"]["specific"][PLANT_LAYER] >= 3
    # languages cluster by "family" (script): perfect, and better than shuffled labels
    fa = s["family_agreement"]["family"]
    assert fa["experts"]["nn_same"] == 1.0 and fa["experts"]["ari"] == pytest.approx(1.0)
    # (6 languages in 3 pairs: 1 of the 15 pairings is perfect, so p cannot go below ~0.07)
    assert fa["shuffled"]["nn_same"] < 0.6 and fa["shuffled"]["ari"] < 0.3
    assert fa["shuffled"]["ari_p"] < 0.1 and fa["shuffled"]["nn_same_p"] < 0.1
    # files: PNGs, one self-contained page, JSON
    out = tmp_path / "r"
    for name in ["grid.png", "grid_diff.png", "counts_per_layer.png", "dendrogram.png",
                 "similarity.png", "entropy.png", "heatmap_xx1.png"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "src=\"heatmap" not in page
    assert json.loads((out / "summary.json").read_text())["languages"][0]["code"] == "xx1"


def test_same_expert_order_in_every_panel(six):
    _, arr = summarise(six)
    from babel_edge.report.analysis import expert_order

    order = expert_order(arr["freq"])
    assert order.shape == (4, 256 // GROUP)
    for layer in range(4):                  # a permutation, by mean frequency, highest first
        assert sorted(order[layer].tolist()) == list(range(256 // GROUP))
        m = arr["freq"].mean(0)[layer, order[layer]]
        assert np.all(np.diff(m) <= 1e-12)


def test_entropy_and_classification_on_constructed_frequencies():
    t = thresholds_for(0.25)
    # 4 languages, 1 layer, 3 experts: one used by lang 0 only, one by all, one by none
    freq = np.array([[[0.9, 0.8, 0.0]], [[0.0, 0.9, 0.0]], [[0.0, 0.7, 0.0]], [[0.01, 0.95, 0.0]]])
    ent = normalised_entropy(freq)
    assert ent[0, 0] < 0.1 and ent[0, 1] > 0.95 and ent[0, 2] == 1.0
    c = classify_experts(freq, t)
    assert c["specific"][0].tolist() == [True, False, False]
    assert c["shared_all"][0].tolist() == [False, True, False]
    assert c["specific_langs"][:, 0, 0].tolist() == [True, False, False, False]


def test_agreement_maths():
    assert adjusted_rand_index([0, 0, 1, 1], ["a", "a", "b", "b"]) == pytest.approx(1.0)
    assert adjusted_rand_index([0, 1, 0, 1], ["a", "a", "b", "b"]) < 0
    v = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0.9, 0.1]])
    sim = similarity(v)
    assert nn_same_label(sim, ["a", "a", "b", "b"]) == 1.0
    assert nn_same_label(sim, ["a", "b", "a", "b"]) == 0.0


# ------------------------------------------------------------------ CLI

def _one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err
    return err


def test_cli_bad_input_one_line_exit_2(tmp_path, capsys):
    from babel_edge.cli import main

    err = _one_line_error(capsys, main(["profile", "--langs", "en,klingon", "--out",
                                        str(tmp_path / "p.safetensors")]))
    assert "klingon" in err
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 100)
    err = _one_line_error(capsys, main(["report", str(tmp_path / "bad.safetensors"),
                                        "--out", str(tmp_path / "r")]))
    assert "corrupt" in err
    err = _one_line_error(capsys, main(["report", str(tmp_path / "missing.safetensors"),
                                        "--out", str(tmp_path / "r")]))
    assert "does not exist" in err


def test_cli_profile_and_report_on_tiny_model(tmp_path, capsys):
    """End to end through the CLI with a saved tiny model and a user corpus (ru, zh, hi)."""
    from babel_edge.cli import main

    lm, texts = build_planted()
    model_dir = tmp_path / "model"
    lm.model.save_pretrained(model_dir)
    lm.tokenizer.save_pretrained(model_dir)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for code, script in (("ru", "xx"), ("zh", "yy"), ("hi", "zz")):
        (corpus / f"{code}.txt").write_text("\n\n".join(language_texts(script, n=12)))
    out = tmp_path / "p.safetensors"
    args = ["profile", "--model", str(model_dir), "--corpus", str(corpus), "--experts-size", "16",
            "--max-len", "32", "--out", str(out)]
    # too few tokens for the default --tokens-per-lang / --min-tokens -> one line, exit 2
    err = _one_line_error(capsys, main(args))
    assert "too few tokens" in err and "ru" in err
    assert main(args + ["--tokens-per-lang", "200", "--min-tokens", "100"]) == 0
    prof = load_profile(out)
    assert prof.langs == ["hi", "ru", "zh"] and prof.tokens.tolist() == [200, 200, 200]
    assert [d["family"] for d in prof.language_info()] == ["Indo-European", "Indo-European",
                                                          "Sino-Tibetan"]
    assert not (tmp_path / "p.safetensors.partial").exists()
    capsys.readouterr()
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    assert "report.html" in capsys.readouterr().out
    assert (tmp_path / "report" / "report.html").exists()
    # --experts-size that does not divide the FFN width -> one line
    err = _one_line_error(capsys, main(args[:-2] + ["--experts-size", "48", "--tokens-per-lang",
                                                     "400", "--out", str(out)]))
    assert "multiple of --experts-size 48" in err

"""The quality–size frontier: Pareto and budget choice on synthetic points, and a tiny-model
sweep end to end (2 rates x 2 precisions) that resumes after an interruption."""
from __future__ import annotations

import json
import threading

import pytest

from babel_edge import frontier as F

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _row(mb, bpb, rate=0.0, vocab=None, quant="q8_0", tok_s=50.0):
    return {"file_mb": mb, "bpb_mean": bpb, "decode_tok_s": tok_s,
            "point": {"rate": rate, "vocab": vocab, "quant": quant, "heal": False}}


def test_pareto_and_budget_on_synthetic_points():
    rows = [_row(300, 1.00), _row(250, 1.05, 0.25), _row(260, 1.10, 0.5),   # 260: dominated
            _row(120, 1.20, 0, 65536), _row(120, 1.25, 0.5, 65536),         # tie in MB, worse
            _row(90, 1.60, 0.5, 32768, "q4_k_m"), _row(95, 1.55, 0, 32768, "q3_k_m")]
    assert F.pareto(rows) == [True, True, False, True, False, True, True]
    assert F.best(rows, max_mb=130) is rows[3]
    assert F.best(rows, max_mb=94) is rows[5]
    assert F.best(rows, max_mb=80) is None
    assert F.best(rows, max_mb=400, min_tok_s=60) is None
    cmd = F.build_command(rows[5], ["en", "de"])
    assert cmd == ("babel-edge build --langs en,de --rate 0.5 --trim-vocab --vocab-size 32768 "
                   "--gguf q4_k_m --onnx none")


def test_a_point_that_failed_parity_is_listed_never_chosen():
    rows = [_row(300, 1.00), _row(120, 1.20, 0, 65536),
            {"key": "r0-vfull-q2_k", "point": {"rate": 0.0, "vocab": None, "quant": "q2_k",
                                               "heal": False},
             "parity_failed": "export failed parity (q2_k): argmax agreement 31% < 40%"}]
    assert F.measured(rows) == rows[:2]
    assert F.best(rows, max_mb=1000) is rows[0]
    res = {"points": rows, "langs": ["en"], "model": "m", "unseen_domain": "handbook",
           "unseen_bytes": 100, "threads": 2, "rounds": 1}
    for r in rows[:2]:
        r["bpb"] = {"en": r["bpb_mean"]}
        r.update(tokens_per_byte={"en": 0.3}, prefill_tok_s=1.0, peak_rss_mb=1.0, parity_argmax=0.9)
    md = F.markdown(res)
    assert "Not offered" in md and "argmax agreement 31%" in md
    assert md.count("| ★ ") == 2


def test_grid_is_checked():
    g = F.grid([0, 0.5], [None], ["q8", "f32"], (False, True))
    assert [p.key for p in g] == ["r0-vfull-q8_0", "r0-vfull-f32", "r0.5-vfull-q8_0",
                                  "r0.5-vfull-f32", "r0.5-vfull-healed-q8_0", "r0.5-vfull-healed-f32"]
    from babel_edge.errors import UserError
    with pytest.raises(UserError):
        F.grid([1.0], [None], ["q8_0"])
    with pytest.raises(UserError):
        F.grid([0.5], [None], ["q9_9"])


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("BABEL_EDGE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_tiny_sweep_end_to_end_with_resume(tiny_dirs, tmp_path):
    points = F.grid([0.0, 0.5], [None], ["f32", "q8_0"])
    sweep = F.Sweep(["en", "de"], str(tiny_dirs["llama"]), points, tmp_path / "out",
                    tmp_path / "work", rounds=1, threads=1, max_bytes=600)
    cancel = threading.Event()
    seen = []

    def progress(done, total, what):
        seen.append(done)
        if done == 1:
            cancel.set()                          # stop after the first point

    res = F.run_sweep(sweep, progress=progress, cancel=cancel)
    assert len(res["points"]) == 1
    first = json.loads((tmp_path / "out" / "frontier.json").read_text())["points"][0]
    sweep.points = points
    res = F.run_sweep(sweep)                      # continues: the first point is not redone
    assert [r["key"] for r in res["points"]] == [p.key for p in points]
    assert res["points"][0] == dict(first, pareto=res["points"][0]["pareto"])
    for r in res["points"]:
        assert r["file_mb"] > 0 and r["decode_tok_s"] > 0 and r["peak_rss_mb"] > 0
        assert set(r["bpb"]) == {"en", "de"} and all(0 < v < 20 for v in r["bpb"].values())
    by = {r["key"]: r for r in res["points"]}
    assert by["r0.5-vfull-f32"]["file_mb"] < by["r0-vfull-f32"]["file_mb"]
    assert by["r0-vfull-q8_0"]["file_mb"] < by["r0-vfull-f32"]["file_mb"]
    assert res["unseen_domain"] and res["unseen_bytes"] >= 600
    assert any(r["pareto"] for r in res["points"])
    for name in ("frontier.md", "frontier.png"):
        assert (tmp_path / "out" / name).stat().st_size > 200
    assert not list((tmp_path / "work" / "points").glob("*.gguf"))      # deleted after measuring


def test_frontier_cli_prints_the_best_build_command(tiny_dirs, tmp_path, capsys):
    from babel_edge.cli import main

    rc = main(["frontier", "--model", str(tiny_dirs["llama"]), "--langs", "en", "--rates", "0,0.5",
               "--vocab", "full", "--quants", "f32", "--rounds", "1", "--threads", "1",
               "--max-bytes", "300", "--out", str(tmp_path / "f"), "--max-mb", "100"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "best within the budget" in printed and "babel-edge build --langs en" in printed
    assert main(["frontier", "--langs", "en", "--rates", "1.5", "--out", str(tmp_path / "g")]) == 2

"""The TUI wizard, driven headless with Textual's Pilot.

- start-up imports nothing heavy (torch / transformers load in workers when a step needs them);
- inline errors (bad path, invalid rate, no language, bad output folder) never crash;
- the whole wizard on a tiny model, from model choice to the results screen, running the
  real build (profile → prune → GGUF + ONNX with parity → bench), then the HTML report key;
- cancelling mid-run leaves no build_summary.json;
- SVG snapshots of the main screens, compared with tests/snapshots/*.svg. They hold no
  timings or machine paths. After an intended change of a screen, regenerate them with
      BABEL_EDGE_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_tui.py -k snapshot
  and look at the new SVGs (open them in a browser) before committing.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

SNAPSHOTS = Path(__file__).parent / "snapshots"
SIZE = (130, 42)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """An empty babel-edge cache for this module: no profiles, the embedded model not converted
    (so the screens look the same on every machine), and nothing written to the user's cache."""
    root = tmp_path_factory.mktemp("cache")
    old = os.environ.get("BABEL_EDGE_CACHE")
    os.environ["BABEL_EDGE_CACHE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("BABEL_EDGE_CACHE", None)
    else:
        os.environ["BABEL_EDGE_CACHE"] = old


def make(**kw):
    from babel_edge.tui import make_app
    return make_app(**kw)


async def until(pilot, cond, timeout: float = 60.0, what: str = "condition") -> None:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await pilot.pause(0.05)


def text_of(app, selector: str) -> str:
    w = app.screen.query_one(selector)
    return str(w.render())


def screen_name(app) -> str:
    return type(app.screen).__name__


async def snapshot(pilot, name: str) -> None:
    """Compare the screen with tests/snapshots/<name>.svg (no focus, so no blinking cursor)."""
    app = pilot.app
    app.screen.set_focus(None)
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()
    svg = app.export_screenshot(title="babel-edge")
    path = SNAPSHOTS / f"{name}.svg"
    if os.environ.get("BABEL_EDGE_UPDATE_SNAPSHOTS") == "1" or not path.exists():
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(svg)
        if os.environ.get("BABEL_EDGE_UPDATE_SNAPSHOTS") != "1":
            pytest.fail(f"snapshot {path.name} was missing and has been written; check it and rerun")
        return
    if svg != path.read_text():
        actual = Path(tempfile.gettempdir()) / "babel-edge-snapshots" / f"{name}.svg"
        actual.parent.mkdir(exist_ok=True)
        actual.write_text(svg)
        pytest.fail(f"screen '{name}' differs from {path.name} (the new rendering is {actual}; "
                    f"BABEL_EDGE_UPDATE_SNAPSHOTS=1 accepts it)")


async def choose_local(pilot, path: str) -> None:
    await pilot.click("#local")
    inp = pilot.app.screen.query_one("#path")
    inp.value = path
    await until(pilot, lambda: (pilot.app.screen.last_checked or (None,))[0] == path,
                what="the model check")


async def choose_langs(pilot, codes) -> None:
    from textual.widgets import DataTable

    app = pilot.app
    await until(pilot, lambda: app.screen.query_one("#langs", DataTable).row_count > 0,
                what="the language table")
    table = app.screen.query_one("#langs", DataTable)
    table.focus()
    for code in codes:
        table.move_cursor(row=table.get_row_index(code))
        await pilot.press("space")
    await pilot.pause()


# ------------------------------------------------------------------ start-up

def test_start_up_imports_nothing_heavy():
    code = """
import asyncio, sys, time
t0 = time.perf_counter()
from babel_edge.tui import make_app
async def main():
    app = make_app()
    async with app.run_test() as pilot:
        await pilot.pause()
        heavy = [m for m in ("torch", "transformers", "onnxruntime", "llama_cpp") if m in sys.modules]
        print(f"{time.perf_counter() - t0:.3f} {type(app.screen).__name__} {','.join(heavy) or '-'}")
asyncio.run(main())
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "BABEL_EDGE_QUIET": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    seconds, screen, heavy = r.stdout.split()[-3:]
    assert screen == "ModelScreen"
    assert heavy == "-", f"imported at start-up: {heavy}"
    # interpreter start + imports + first screen; about 1.5 s here. The bound is generous
    # because the machine is shared; the import check above is the real guard.
    assert float(seconds) < 8.0


# ------------------------------------------------------------------ errors and snapshots

def test_steps_inline_errors_and_snapshots(cache, tiny_dirs):
    async def run():
        app = make(out_dir="babel-edge-build-test-unused")
        async with app.run_test(size=SIZE) as pilot:
            await snapshot(pilot, "tui_model")
            # the embedded default, not converted in this cache: said so, with a way to prepare it
            await pilot.press("ctrl+n")
            await until(pilot, lambda: screen_name(app) == "LanguagesScreen", what="the check")
            await pilot.press("escape")
            await pilot.pause()
            assert "not converted yet" in text_of(app, "#info")
            assert "hidden" not in app.screen.query_one("#prepare").classes
            # a .gguf path is only converted when asked (Enter), not while typing
            await pilot.click("#local")
            app.screen.query_one("#path").value = "/no/such/model.gguf"
            await pilot.pause(0.6)
            assert app.screen.last_checked[0] is None and "press Enter" in text_of(app, "#info")
            await pilot.press("enter")
            await until(pilot, lambda: app.screen.last_checked[0] == "/no/such/model.gguf",
                        what="the .gguf check")
            assert "not found" in text_of(app, "#path-error")
            # a bad path: the error sits under the field, the screen stays
            await choose_local(pilot, "/no/such/model")
            assert "not found" in text_of(app, "#path-error")
            await pilot.press("ctrl+n")
            await pilot.pause()
            assert screen_name(app) == "ModelScreen"
            # a file that is not a model
            await choose_local(pilot, str(Path(__file__)))
            assert ".gguf" in text_of(app, "#path-error")
            # the tiny model: the architecture is shown
            await choose_local(pilot, str(tiny_dirs["llama"]))
            assert "Llama" in text_of(app, "#info")
            assert "-shown" not in app.screen.query_one("#path-error").classes
            await pilot.press("ctrl+n")
            await until(pilot, lambda: screen_name(app) == "LanguagesScreen", what="step 2")
            # no language chosen
            await pilot.press("ctrl+n")
            await pilot.pause()
            assert screen_name(app) == "LanguagesScreen"
            assert "at least one" in text_of(app, "#langs-error")
            await choose_langs(pilot, ["en", "de"])
            assert app.state.langs == ["en", "de"]
            await snapshot(pilot, "tui_languages")
            await pilot.press("ctrl+n")
            await until(pilot, lambda: screen_name(app) == "BudgetScreen", what="step 3")
            rate = app.screen.query_one("#rate")
            for bad, words in (("1.5", "between 0 and 1"), ("abc", "e.g. 0.5"), ("0", "between 0 and 1")):
                rate.value = bad
                await pilot.pause()
                assert words in text_of(app, "#rate-error"), bad
                await pilot.press("ctrl+n")
                await pilot.pause()
                assert screen_name(app) == "BudgetScreen"
            rate.value = "0.5"
            await pilot.pause()
            assert "-shown" not in app.screen.query_one("#rate-error").classes
            est = text_of(app, "#estimate")
            assert "parameters" in est and "→" in est
            await pilot.click("#schedule-uniform")
            await pilot.pause()
            assert app.state.schedule == "uniform"
            assert "per-layer pruning" in text_of(app, "#estimate")     # uniform: exact widths
            await snapshot(pilot, "tui_budget")
            await pilot.press("ctrl+n")
            await until(pilot, lambda: screen_name(app) == "ExportScreen", what="step 4")
            await snapshot(pilot, "tui_export")
            # no format, then a folder that is not empty
            await pilot.click("#gguf-on")
            await pilot.click("#onnx-on")
            await pilot.pause()
            assert "at least one format" in text_of(app, "#formats-error")
            await pilot.press("ctrl+n")
            assert screen_name(app) == "ExportScreen"
            await pilot.click("#gguf-on")
            app.screen.query_one("#out").value = str(Path(__file__).parent)
            await pilot.pause()
            assert "not empty" in text_of(app, "#out-error")
            await pilot.press("ctrl+n")
            await pilot.pause()
            assert screen_name(app) == "ExportScreen"
            # back keeps the choices
            await pilot.press("escape")
            await pilot.pause()
            assert screen_name(app) == "BudgetScreen"
            assert app.screen.query_one("#rate").value == "0.5"

    asyncio.run(run())


FAKE_SUMMARY = {
    "langs": ["en", "de"], "rate": 0.5, "model": "tiny-llama",
    "artefacts": {"profile": "cache/profiles/0123.profile.safetensors", "pruned_model": "out/pruned",
                  "gguf_dense": "out/dense.f32.gguf", "gguf_pruned": "out/pruned.f32.gguf",
                  "bench": "out/bench"},
    "exports": {k: {"file_bytes": b, "parity": {"precision": "f32", "max_abs_diff": d,
                                                 "argmax_agreement": 1.0, "ppl_ratio": 1.0001,
                                                 "passed": True}}
                for k, b, d in (("gguf_dense", 2_400_000, 2.1e-5), ("gguf_pruned", 1_700_000, 3.4e-5))},
}
FAKE_BENCH = {
    "unseen_domain": "handbook",
    "results": [
        {"label": lab, "backend": "llama.cpp", "file_bytes": fb, "peak_rss_mb": {"median": rss},
         "prefill512_tok_s": {"median": pf}, "decode_tok_s": {"median": dc},
         "ppl": {"en": {"bits_per_byte": p1}, "de": {"bits_per_byte": p2}, "ru": {"bits_per_byte": p3}}}
        for lab, fb, rss, pf, dc, p1, p2, p3 in (("dense", 2_400_000, 310, 9000.0, 800.0, 1.201, 1.294, 1.987),
                                                  ("pruned", 1_700_000, 290, 11000.0, 950.0, 1.250, 1.311, 2.540))],
    "comparisons": [{"backend": "llama.cpp", "size_ratio": 0.708, "decode_speedup": 1.19,
                     "ideal_decode_speedup": 1.35}],
}


def test_results_screen_snapshot(cache):
    from babel_edge.tui.screens import ResultsScreen

    async def run():
        app = make()
        async with app.run_test(size=SIZE) as pilot:
            await app.push_screen(ResultsScreen(FAKE_SUMMARY, FAKE_BENCH, out_dir="out"))
            await pilot.pause()
            await snapshot(pilot, "tui_results")

    asyncio.run(run())


def test_frontier_screen_sweeps_resumes_and_applies_the_best_point(cache, tiny_dirs, tmp_path):
    """Step 3's frontier: a real 2-point sweep on the tiny model, cancelled after the first
    point and continued, then the best point within a budget becomes the wizard's choice."""
    from babel_edge.tui.screens import BudgetScreen, FrontierScreen

    async def run():
        app = make(model=str(tiny_dirs["llama"]), out_dir=str(tmp_path / "build"))
        async with app.run_test(size=SIZE) as pilot:
            app.state.langs = ["en", "de"]
            await app.push_screen(BudgetScreen())
            await pilot.pause()
            await pilot.press("ctrl+f")
            await until(pilot, lambda: screen_name(app) == "FrontierScreen", what="the frontier")
            scr = app.screen
            scr.query_one("#rates").value = "0,abc"
            await pilot.click("#run")
            await pilot.pause()
            assert "rates are numbers" in text_of(app, "#grid-error") and not scr.running
            scr.query_one("#rates").value = "0,0.5"
            scr.query_one("#vocab").value = "full"
            scr.query_one("#quants").value = "f32"
            await pilot.pause(0.5)                          # the button's press effect ends
            await pilot.click("#run")
            await until(pilot, lambda: "0/2 measured" in text_of(app, "#sweep-status"),
                        what="the first point")
            await pilot.click("#cancel")
            await until(pilot, lambda: not scr.running, timeout=300, what="the cancelled sweep")
            assert "cancelled after 1 of 2" in text_of(app, "#sweep-status")
            assert scr.query_one("#points").row_count == 1
            await pilot.pause(0.5)
            await pilot.click("#run")                       # continues: one point left
            await until(pilot, lambda: not scr.running, timeout=300, what="the rest of the sweep")
            assert "done" in text_of(app, "#sweep-status"), text_of(app, "#sweep-status")
            assert scr.query_one("#points").row_count == 2
            pts = {r["point"]["rate"]: r for r in scr.result["points"]}
            assert pts[0.5]["file_mb"] < pts[0.0]["file_mb"]
            scr.query_one("#max-mb").value = f"{pts[0.5]['file_mb'] * 1.01:.4f}"   # only 0.5 fits
            await pilot.pause()
            assert scr.best["point"]["rate"] == 0.5 and "--rate 0.5" in text_of(app, "#best")
            scr.query_one("#max-mb").value = "0.0001"
            await pilot.pause()
            assert scr.best is None and "no measured point" in text_of(app, "#best")
            scr.query_one("#max-mb").value = f"{pts[0.5]['file_mb'] * 1.01:.4f}"
            await pilot.pause()
            await pilot.click("#use")
            await until(pilot, lambda: screen_name(app) == "BudgetScreen", what="back to budget")
            assert (app.state.rate, app.state.gguf_quant, app.state.trim_vocab) == (0.5, "f32", False)
            assert app.screen.query_one("#rate").value == "0.5"
            assert (tmp_path / "build" / "frontier" / "frontier.json").exists()

    asyncio.run(run())


# ------------------------------------------------------------------ the real build

def _wizard_to_build(pilot, tiny, out):
    """Steps 1–4 by keyboard and mouse; returns when the run screen is up."""
    async def go():
        app = pilot.app
        await choose_local(pilot, str(tiny))
        assert app.state.model_info is not None
        await pilot.press("ctrl+n")
        await until(pilot, lambda: screen_name(app) == "LanguagesScreen", what="step 2")
        await choose_langs(pilot, ["en", "de"])
        await pilot.press("ctrl+n")
        await until(pilot, lambda: screen_name(app) == "BudgetScreen", what="step 3")
        app.screen.query_one("#rate").value = "0.5"
        await pilot.pause()
        await pilot.press("ctrl+n")
        await until(pilot, lambda: screen_name(app) == "ExportScreen", what="step 4")
        await app.workers.wait_for_complete()       # the precision lists
        await pilot.pause()
        # the fastest precisions keep the test short; the Select widgets take them as a user would
        app.screen.query_one("#gguf-precision").value = "f32"
        app.screen.query_one("#onnx-precision").value = "fp32"
        app.screen.query_one("#out").value = str(out)
        await pilot.pause()
        assert (app.state.gguf_quant, app.state.onnx_precision) == ("f32", "fp32")
        await pilot.click("#next")
        await until(pilot, lambda: screen_name(app) == "RunScreen", what="step 5")
    return go()


def test_wizard_end_to_end_on_a_tiny_model(cache, tiny_dirs, tmp_path):
    out = tmp_path / "build"
    opened = []

    async def run():
        app = make(tokens_per_lang=512, bench_rounds=1, other_langs=["ru"], opener=opened.append)
        async with app.run_test(size=SIZE) as pilot:
            await _wizard_to_build(pilot, tiny_dirs["llama"], out)
            run_screen = app.screen
            await until(pilot, lambda: screen_name(app) != "RunScreen", timeout=400, what="the build")
            assert run_screen.outcome == "done", run_screen.outcome
            assert run_screen.stages_seen == ["profile", "prune", "export", "bench"]
            assert all(s.startswith("done") for s in run_screen.status.values()), run_screen.status
            assert screen_name(app) == "ResultsScreen"
            res = app.screen
            await until(pilot, lambda: res.is_mounted and res.query("#bench"), what="the results")
            await pilot.pause()
            print("build timings (s):", res.summary.get("timings_s"))
            # the artefacts exist
            art = res.summary["artefacts"]
            for key in ("profile", "pruned_model", "gguf_dense", "gguf_pruned", "onnx_dense",
                        "onnx_pruned", "bench"):
                assert Path(art[key]).exists(), key
            assert (out / "build_summary.json").exists()
            # the estimate shown before the build is what the build made: parameters exactly,
            # and, given the build's profile, every layer's width
            from babel_edge.estimate import language_previews, model_shape, plan_estimate
            pruned = model_shape(art["pruned_model"])
            est = app.state.estimate()
            assert pruned.params == est.params_after
            assert sum(pruned.ffn_widths) == est.kept_neurons
            signal = language_previews(app.state.fingerprint).signal(["en", "de"])
            assert signal is not None
            # the default schedule is the search: its widths are the plan's searched ones,
            # which the estimate says it cannot know beforehand
            assert app.state.schedule == "search" and est.widths is None
            plan = json.loads((Path(art["pruned_model"]) / "pruning_plan.json").read_text())
            assert plan["schedule"] == "search" and plan["search"]["widths"] == list(pruned.ffn_widths)
            # the table shows measured figures: 2 engines x (dense, pruned)
            from textual.widgets import DataTable
            table = res.query_one("#bench", DataTable)
            assert table.row_count == 4
            cols = [str(c.label) for c in table.columns.values()]
            assert {"bits/byte en*", "bits/byte de*", "bits/byte ru"} <= set(cols)
            rows = [table.get_row_at(i) for i in range(table.row_count)]
            assert {(r[0], r[1]) for r in rows} == {("llama.cpp", "dense"), ("llama.cpp", "pruned"),
                                                   ("onnxruntime", "dense"), ("onnxruntime", "pruned")}
            for r in rows:
                nums = [float(str(c).replace(",", "")) for c in r[2:]]
                assert all(n > 0 for n in nums), r
            size = {(r[0], r[1]): float(r[2]) for r in rows}
            assert size[("llama.cpp", "pruned")] < size[("llama.cpp", "dense")]
            par = res.query_one("#parity", DataTable)
            assert par.row_count == 4
            assert all(str(par.get_row_at(i)[-1]) == "pass" for i in range(4))
            # one key opens the HTML report (written from the build's profile)
            await pilot.press("o")
            await until(pilot, lambda: opened, timeout=120, what="the report")
            assert opened[0].endswith("report.html")
            assert (out / "report" / "report.html").exists()

        # a second visit: the model now has a profile, so languages show previews
        app2 = make(tokens_per_lang=512)
        async with app2.run_test(size=SIZE) as pilot:
            await choose_local(pilot, str(tiny_dirs["llama"]))
            await pilot.press("ctrl+n")
            await until(pilot, lambda: screen_name(app2) == "LanguagesScreen", what="step 2")
            await until(pilot, lambda: app2.state.previews is not None, what="previews")
            assert set(app2.state.previews.langs) == {"en", "de"}
            from textual.widgets import DataTable
            table = app2.screen.query_one("#langs", DataTable)
            spark = str(table.get_cell("en", "activation by layer"))
            assert len(spark) == len(app2.state.shape.ffn_widths)     # one mark per layer
            await choose_langs(pilot, ["en"])
            await pilot.press("ctrl+n")
            await until(pilot, lambda: screen_name(app2) == "BudgetScreen", what="step 3")
            assert app2.state.schedule == "search"
            assert "decided by the search" in text_of(app2, "#estimate")
            # adaptive with a profile for the targets: exact per-layer widths in the estimate
            await pilot.click("#schedule-adaptive")
            await pilot.pause()
            assert app2.state.schedule == "adaptive"
            assert "per-layer pruning" in text_of(app2, "#estimate")

    asyncio.run(run())


def test_cancel_mid_run_leaves_no_complete_build(cache, tiny_dirs, tmp_path):
    out = tmp_path / "cancelled"

    async def run():
        app = make(tokens_per_lang=512, bench_rounds=1, other_langs=["ru"])
        async with app.run_test(size=SIZE) as pilot:
            await _wizard_to_build(pilot, tiny_dirs["llama"], out)
            run_screen = app.screen
            await until(pilot, lambda: "prune" in run_screen.stages_seen, timeout=300,
                        what="the prune stage")
            await pilot.press("c")
            await until(pilot, lambda: run_screen.outcome is not None, timeout=300, what="the cancel")
            assert run_screen.outcome == "cancelled"
            assert screen_name(app) == "RunScreen"              # no results screen
            assert "export" not in run_screen.stages_seen or "bench" not in run_screen.stages_seen
            assert not (out / "build_summary.json").exists()
            assert not (out / "bench" / "bench.json").exists()
            assert not [p for p in out.rglob("*") if ".tmp" in p.name]   # nothing half-written
            # after a cancel the user can go back and change the choices
            await pilot.press("escape")
            await pilot.pause()
            assert screen_name(app) == "ExportScreen"

    asyncio.run(run())


# ------------------------------------------------------------------ failures and the CLI

@pytest.mark.parametrize("exc", ["user", "bug"])
def test_a_failing_build_is_shown_not_raised(cache, exc):
    from babel_edge.errors import UserError
    from babel_edge.tui.screens import RunScreen

    def builder(opts, out, on_stage=None, cancel=None, on_progress=None):
        on_stage("profile", 0, 4)
        if exc == "user":
            raise UserError("language 'xx' is not in the corpus")
        raise RuntimeError("boom [x] [Errno 2] [/b]")

    async def run():
        app = make(builder=builder)
        async with app.run_test(size=SIZE) as pilot:
            app.state.langs = ["en"]
            await app.push_screen(RunScreen())
            screen = app.screen
            await until(pilot, lambda: screen.outcome is not None, what="the failure")
            assert screen.outcome == "failed"
            assert screen.status["profile"] == "failed" and screen.status["bench"] == "not run"
            title = text_of(app, "#run-title")
            assert ("not in the corpus" if exc == "user" else "RuntimeError: boom") in title

    asyncio.run(run())


def test_cli_registers_tui():
    from babel_edge.cli import build_parser
    from babel_edge.cli import tui as cli_tui

    assert build_parser().parse_args(["tui"]).func is cli_tui.run

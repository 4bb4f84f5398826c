"""Step 5: the build (pipeline.build, the same call as `babel-edge build`) in a thread
worker, one progress row per stage and a log.

The pipeline reports when each of its stages starts (profile, prune, export, bench);
the rows show exactly that: a running stage pulses (the library gives no finer count),
a stage is done when the next one starts. Parity has no stage of its own: each
exporter checks its file against PyTorch before keeping it, so the parity row runs with
export and is done when export is. Cancel sets the pipeline's cancel event; the build
stops at its next checkpoint (between stages and between exported files), and since
every stage writes atomically and the summary is written last, a cancelled build has no
build_summary.json and no half-written file."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Label, ProgressBar, RichLog, Static

from ...pipeline import STAGES
from rich.markup import escape as rich_esc

from ..widgets import NavBar, esc
from .base import WizardScreen

# the pipeline's stages, with parity shown after export (where it happens)
ROWS = tuple(r for s in STAGES for r in ((s, "parity") if s == "export" else (s,)))
NOTES = {"parity": "checked inside export, per file"}


class RunScreen(WizardScreen):
    STEP = 5
    BINDINGS = [Binding("escape", "back", "Back"), Binding("c", "cancel", "Cancel build"),
                Binding("ctrl+n", "next", show=False)]

    def __init__(self) -> None:
        super().__init__()
        self.cancel_event = threading.Event()
        self.outcome: str | None = None          # done | cancelled | failed
        self.stages_seen: list[str] = []
        self._started: dict[str, float] = {}
        self._t0 = 0.0
        self.status: dict[str, str] = {name: "waiting" for name in ROWS}

    def compose(self) -> ComposeResult:
        st = self.state
        yield self.title_bar()
        with Vertical(classes="body"):
            yield Static(f"Building [b]{', '.join(st.langs)}[/b] at rate {st.rate:g} "
                         f"({st.schedule}, {st.granularity}) from {esc(st.model_label)} "
                         f"into [b]{esc(st.out_dir)}[/b]", classes="question", id="run-title")
            for name in ROWS:
                with Horizontal(classes="stage", id=f"row-{name}"):
                    yield Label(name, classes="stage-name")
                    yield ProgressBar(total=1, show_eta=False, show_percentage=False, id=f"bar-{name}")
                    yield Label("waiting", id=f"status-{name}", classes="stage-status")
            yield RichLog(id="log", wrap=True, markup=True, highlight=False)
        yield NavBar(back="◂ Back", next_="Cancel", id="run-nav")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#back").disabled = True
        self.app.current_cancel = self.cancel_event
        st = self.state
        if not st.gguf_quant and not st.onnx_precision:
            self._set("bench", "skipped", 0)
        self._t0 = time.monotonic()
        formats = ", ".join(f"{f} {p}" for f, p in (("GGUF", st.gguf_quant), ("ONNX", st.onnx_precision)) if p)
        self.log_line(f"build: {', '.join(st.langs)} at rate {st.rate:g} ({st.schedule}, "
                      f"{st.granularity}{', vocabulary trimmed' if st.trim_vocab else ''}); "
                      f"exports: {formats or 'none'}; bench rounds {st.bench_rounds}")
        self.log_line("loading the libraries (torch, transformers) in the background…")
        self._build()

    # ---- rows and log
    def log_line(self, text: str) -> None:
        self.query_one("#log", RichLog).write(f"[dim]{time.monotonic() - self._t0:6.1f}s[/dim] {text}")

    def _set(self, name: str, status: str, progress: float | None) -> None:
        if name not in self.status:           # a stage this screen has no row for: log only
            return
        bar = self.query_one(f"#bar-{name}", ProgressBar)
        if progress is None:
            bar.update(total=None)                 # pulses: running, no finer count
        else:
            bar.update(total=1, progress=progress)
        self.status[name] = status
        note = NOTES.get(name)
        self.query_one(f"#status-{name}", Label).update(
            status + (f" ({note})" if note and status == "running" else ""))

    def _finish_running(self, status: str = "done") -> None:
        for name in ROWS:
            if self.status[name] == "running":
                secs = time.monotonic() - self._started.get(name, self._t0)
                self._set(name, f"{status} ({secs:.1f} s)" if status == "done" else status,
                          1 if status == "done" else 0)

    def _stage(self, name: str, index: int, total: int) -> None:
        self._finish_running()
        self.stages_seen.append(name)
        self._started[name] = time.monotonic()
        self._set(name, "running", None)
        if name == "export":
            self._started["parity"] = time.monotonic()
            self._set("parity", "running", None)
        self.log_line(f"stage {index + 1}/{total}: [b]{name}[/b]")

    def _progress(self, name: str, done: int, total: int, what: str) -> None:
        """A finished step inside a stage (an exported file, a benchmark run)."""
        rows = [name] + (["parity"] if name == "export" else [])   # parity runs inside each export
        for row in rows:
            if self.status.get(row) == "running":
                self._set(row, "running", done / max(total, 1))
                self.query_one(f"#status-{row}", Label).update(f"running: {done}/{total}")
        self.log_line(rich_esc(f"{name} {done}/{total}: {what}"))

    # ---- the work
    @work(thread=True, exclusive=True, group="build")
    def _build(self) -> None:
        from ...pipeline import Cancelled

        opts = self.state.build_options()
        out = Path(self.state.out_dir).expanduser()
        call = self.app.call_from_thread
        try:
            from ...errors import user_error_types
            errors = user_error_types()
        except Exception:  # noqa: BLE001
            errors = (ValueError,)
        try:
            summary = self.app.builder(opts, out, on_stage=lambda n, i, k: call(self._stage, n, i, k),
                                       cancel=self.cancel_event,
                                       on_progress=lambda n, d, k, w: call(self._progress, n, d, k, w))
        except Cancelled as e:
            call(self._cancelled, str(e))
        except errors as e:
            call(self._failed, str(e))
        except Exception as e:  # noqa: BLE001 - shown in the log, never a crash
            call(self._failed, f"{type(e).__name__}: {e}")
        else:
            bench = None
            bench_file = out / "bench" / "bench.json"
            if bench_file.exists():
                bench = json.loads(bench_file.read_text())
            call(self._done, summary, bench)

    def _done(self, summary: dict, bench: dict | None) -> None:
        self.outcome = "done"
        self._finish_running()
        for name in ROWS:
            if self.status[name] == "waiting":
                self._set(name, "skipped", 0)
        for k, v in summary.get("artefacts", {}).items():
            self.log_line(rich_esc(f"{k}: {v}"))
        self.log_line("[green]build complete[/green]")
        self.app.current_cancel = None
        from .results import ResultsScreen
        self.app.switch_screen(ResultsScreen(summary, bench))

    def _ended(self) -> None:
        for name in ROWS:
            if self.status[name] == "waiting":
                self._set(name, "not run", 0)
        self.app.current_cancel = None
        self.query_one("#back").disabled = False
        self.query_one("#next").disabled = True

    def _cancelled(self, message: str) -> None:
        self.outcome = "cancelled"
        self._finish_running("cancelled")
        self.log_line(f"[yellow]{rich_esc(message)}[/yellow]: no build_summary.json was written, so "
                      f"nothing in {rich_esc(self.state.out_dir)} counts as a finished build; files that were "
                      f"finished stay (each written atomically), nothing is half-written")
        self._ended()

    def _failed(self, message: str) -> None:
        self.outcome = "failed"
        self._finish_running("failed")
        self.log_line(f"[red]failed:[/red] {rich_esc(message)}")
        self.query_one("#run-title", Static).update(f"[red]The build failed:[/red] {esc(message)}\n"
                                                    f"Go back (Esc) to change the choices.")
        self._ended()

    # ---- keys
    def action_next(self) -> None:          # nothing to go on to until the build ends
        pass

    def on_button_pressed(self, event) -> None:
        if event.button.id == "next":        # the nav bar's right button is Cancel here
            event.stop()
            self.action_cancel()
        else:
            super().on_button_pressed(event)

    def action_cancel(self) -> None:
        if self.outcome is None and not self.cancel_event.is_set():
            self.cancel_event.set()
            self.query_one("#next").disabled = True
            self.log_line("[yellow]cancelling[/yellow]: the build stops at its next checkpoint "
                          "(between stages and between exported files)")

    def action_back(self) -> None:
        if self.outcome is None:
            self.action_cancel()
            return
        self.app.pop_screen()

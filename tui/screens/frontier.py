"""The quality–size frontier (babel_edge.frontier, the same calls as `babel-edge frontier`),
opened from step 3 with `f`: sweep FFN rates x vocabulary sizes x GGUF precisions for the
chosen model and languages in a thread worker (progress bar, cancel with `c`; an interrupted
sweep continues where it stopped, from <out>/frontier/frontier.json), show every measured
point with the Pareto-optimal ones marked, pick the best within a size budget and apply it
to the wizard's choices (`u`)."""
from __future__ import annotations

import threading
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, DataTable, Footer, Input, Label, ProgressBar, Static

from ..widgets import FieldError, esc
from .base import WizardScreen


def parse_grid(rates: str, vocab: str, quants: str):
    """The sweep's points from the three fields, or (None, what is wrong)."""
    from ... import frontier as F
    from ...errors import UserError

    try:
        r = [float(x) for x in rates.split(",") if x.strip()]
        v = [None if x.strip().lower() in ("full", "none", "0") else int(x)
             for x in vocab.split(",") if x.strip()]
        q = [x.strip() for x in quants.split(",") if x.strip()]
        if not (r and v and q):
            return None, "give at least one rate, one vocabulary size and one precision"
        return F.grid(r, v, q), None
    except ValueError:
        return None, "rates are numbers like 0,0.25,0.5; vocabulary sizes numbers or 'full'"
    except UserError as e:
        return None, str(e)


class FrontierScreen(WizardScreen):
    STEP = 3
    BINDINGS = [Binding("escape", "back", "Back to budget"), Binding("r", "run", "Run sweep"),
                Binding("c", "cancel", "Cancel sweep"), Binding("u", "use", "Use best")]

    def __init__(self) -> None:
        super().__init__()
        self.cancel_event = threading.Event()
        self.running = False
        self.result: dict | None = None
        self.best: dict | None = None

    @property
    def out_dir(self) -> Path:
        return Path(self.state.out_dir).expanduser() / "frontier"

    def compose(self) -> ComposeResult:
        from ... import frontier as F

        st = self.state
        yield self.title_bar()
        with VerticalScroll(classes="body"):
            yield Static(f"Which mix of FFN pruning, vocabulary trimming and quantization keeps "
                         f"[b]{', '.join(st.langs)}[/b] best for a file-size budget, on "
                         f"{esc(st.model_label)}? Every point is built, exported to GGUF and "
                         f"measured on unseen-domain text (minutes per point).", classes="question")
            for fid, label, value in (
                    ("rates", "FFN rates", ",".join(f"{r:g}" for r in F.DEFAULT_RATES)),
                    ("vocab", "Vocabulary", ",".join(str(v or "full") for v in F.DEFAULT_VOCAB)),
                    ("quants", "Precisions", ",".join(F.DEFAULT_QUANTS))):
                with Horizontal(classes="field"):
                    yield Label(label, classes="label")
                    yield Input(value=value, id=fid, classes="wide", compact=True)
            yield FieldError(id="grid-error")
            with Horizontal(classes="field"):
                yield Label("Budget MB", classes="label")
                yield Input(value="", placeholder="no limit", id="max-mb", classes="short",
                            compact=True)
                yield FieldError(id="mb-error")
            with Horizontal(classes="field"):
                yield Button("Run sweep", id="run", variant="primary", compact=True)
                yield Button("Cancel", id="cancel", compact=True, disabled=True)
                yield Button("Use best", id="use", compact=True, disabled=True)
            yield ProgressBar(total=1, show_eta=False, id="sweep-bar")
            yield Static("", id="sweep-status", classes="note")
            yield DataTable(id="points", cursor_type="row", show_cursor=False)
            yield Static("", id="best", classes="note")
        yield Footer()

    def on_mount(self) -> None:
        from ...io import read_json

        self.query_one("#sweep-bar", ProgressBar).update(progress=0)
        path = self.out_dir / "frontier.json"
        if path.exists():                        # an earlier (maybe interrupted) sweep
            try:
                res = read_json(path)
            except ValueError:
                res = None
            if res and res.get("langs") == list(self.state.langs):
                self._show(res)
                self.query_one("#sweep-status", Static).update(
                    f"{len(res['points'])} points measured earlier ({esc(str(path))}); "
                    f"Run sweep measures only what is missing")

    # ---- the table
    def _show(self, res: dict) -> None:
        from ... import frontier as F

        self.result = res
        table = self.query_one("#points", DataTable)
        table.clear(columns=True)
        langs = res["langs"]
        table.add_columns("", "point", "MB", *langs, "mean bpb", "decode tok/s")
        rows = F.measured(res["points"])
        on = F.pareto(rows) if rows else []
        for r, star in sorted(zip(rows, on), key=lambda t: t[0]["file_mb"]):
            table.add_row("★" if star else "", F.Point(**r["point"]).label(), f"{r['file_mb']:.1f}",
                          *(f"{r['bpb'][l]:.3f}" for l in langs), f"{r['bpb_mean']:.3f}",
                          f"{r.get('decode_tok_s') or 0:.1f}", key=r["key"])
        self._pick()

    def _budget(self) -> tuple[float | None, str | None]:
        t = self.query_one("#max-mb", Input).value.strip()
        if not t:
            return None, None
        try:
            v = float(t)
        except ValueError:
            return None, "type a size in MB, e.g. 100 (empty: no limit)"
        return (v, None) if v > 0 else (None, "the budget must be positive")

    def _pick(self) -> None:
        from ... import frontier as F

        mb, msg = self._budget()
        self.query_one("#mb-error", FieldError).show(msg)
        self.best = None
        if self.result and self.result["points"] and not msg:
            self.best = F.best(self.result["points"], mb)
        line = ""
        if self.result and self.result["points"] and not msg:
            if self.best is None:
                line = f"no measured point is at most {mb:g} MB"
            else:
                b = self.best
                line = (f"best{'' if mb is None else f' within {mb:g} MB'}: "
                        f"[b]{esc(F.Point(**b['point']).label())}[/b] — {b['file_mb']:.1f} MB, mean "
                        f"{b['bpb_mean']:.3f} bits per byte\n"
                        f"{esc(F.build_command(b, self.result['langs'], self.state.model))}\n"
                        f"Use best (u) sets the budget and export steps to it")
        self.query_one("#best", Static).update(line)
        self.query_one("#use", Button).disabled = self.best is None or self.running

    @on(Input.Changed, "#max-mb")
    def _mb_changed(self) -> None:
        self._pick()

    # ---- the sweep
    def on_button_pressed(self, event: Button.Pressed) -> None:
        action = {"run": self.action_run, "cancel": self.action_cancel, "use": self.action_use}
        if event.button.id in action:
            event.stop()
            action[event.button.id]()

    def action_run(self) -> None:
        if self.running:
            return
        points, msg = parse_grid(*(self.query_one(f"#{f}", Input).value
                                   for f in ("rates", "vocab", "quants")))
        self.query_one("#grid-error", FieldError).show(msg)
        if msg:
            return
        self.running = True
        self.cancel_event = threading.Event()
        self.app.current_cancel = self.cancel_event
        for bid, disabled in (("run", True), ("cancel", False), ("use", True)):
            self.query_one(f"#{bid}", Button).disabled = disabled
        self.query_one("#sweep-bar", ProgressBar).update(total=len(points), progress=0)
        self.query_one("#sweep-status", Static).update(f"sweeping {len(points)} points…")
        self._sweep(points)

    @work(thread=True, exclusive=True, group="frontier")
    def _sweep(self, points) -> None:
        from ... import frontier as F
        from ...errors import user_error_types

        st = self.state
        call = self.app.call_from_thread
        sweep = F.Sweep(list(st.langs), st.model, points, self.out_dir, self.out_dir / "work")
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            res = F.run_sweep(sweep, cancel=self.cancel_event,
                              progress=lambda d, n, what: call(self._progress, d, n, what))
        except user_error_types() as e:
            call(self._ended, f"[red]the sweep failed:[/red] {esc(str(e))}", None)
        except Exception as e:  # noqa: BLE001 - shown on the screen, never a crash
            call(self._ended, f"[red]the sweep failed:[/red] {esc(f'{type(e).__name__}: {e}')}", None)
        else:
            done = len([p for p in points if p.key in {r['key'] for r in res['points']}])
            msg = (f"[yellow]cancelled[/yellow] after {done} of {len(points)} points; Run sweep "
                   f"continues" if self.cancel_event.is_set() else
                   f"[green]done[/green]: {len(res['points'])} points in {esc(str(self.out_dir))}")
            call(self._ended, msg, res)

    def _progress(self, done: int, total: int, what: str) -> None:
        if self.is_mounted:
            self.query_one("#sweep-bar", ProgressBar).update(total=total, progress=done)
            self.query_one("#sweep-status", Static).update(f"{done}/{total} measured; now: {esc(what)}")

    def _ended(self, message: str, res: dict | None) -> None:
        self.running = False
        self.app.current_cancel = None
        if not self.is_mounted:
            return
        if res is not None:
            self._show(res)
        self.query_one("#sweep-status", Static).update(message)
        self.query_one("#run", Button).disabled = False
        self.query_one("#cancel", Button).disabled = True
        self._pick()

    def action_cancel(self) -> None:
        if self.running and not self.cancel_event.is_set():
            self.cancel_event.set()
            self.query_one("#cancel", Button).disabled = True
            self.query_one("#sweep-status", Static).update(
                "[yellow]cancelling[/yellow]: the sweep stops after the point it is measuring")

    def action_use(self) -> None:
        """Apply the best point to the wizard's choices and go back to the budget step."""
        if self.best is None or self.running:
            return
        p = self.best["point"]
        st = self.state
        st.rate, st.trim_vocab, st.vocab_size = p["rate"], bool(p["vocab"]), p["vocab"]
        st.heal, st.gguf_quant = bool(p["heal"]), p["quant"]
        self.app.pop_screen()

    def action_back(self) -> None:
        if self.running:
            self.action_cancel()
            return
        self.app.pop_screen()

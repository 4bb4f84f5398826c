"""Step 4: formats and precision per format, and where the build goes."""
from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Checkbox, Footer, Input, Label, Select, Static

from ..widgets import EstimateView, FieldError, NavBar
from .base import WizardScreen

FORMATS = (("gguf", "gguf_quant", "GGUF (llama.cpp)", "quantization"),
           ("onnx", "onnx_precision", "ONNX (onnxruntime)", "precision"))


class ExportScreen(WizardScreen):
    STEP = 4

    def __init__(self) -> None:
        super().__init__()
        from ..state import default_option
        # the precision each format had last (kept while its checkbox is off)
        self._last = {fmt: default_option(attr) for fmt, attr, _, _ in FORMATS}

    def compose(self) -> ComposeResult:
        st = self.state
        yield self.title_bar()
        with VerticalScroll(classes="body"):
            yield Static("Which files to export (dense and pruned, each checked against PyTorch)?",
                         classes="question")
            for fmt, attr, title, what in FORMATS:
                value = getattr(st, attr)
                with Horizontal(classes="field"):
                    yield Checkbox(title, value=value is not None, id=f"{fmt}-on", classes="format", compact=True)
                    yield Label(what, classes="sublabel")
                    default = value or self._last.get(fmt)
                    yield Select([(default, default)] if default else [], value=default or Select.NULL,
                                 allow_blank=default is None, id=f"{fmt}-precision",
                                 disabled=value is None, classes="choice", compact=True)
            yield FieldError(id="formats-error")
            with Horizontal(classes="field"):
                yield Label("Output folder", classes="label")
                yield Input(value=st.out_dir, id="out", classes="wide", compact=True)
            with Horizontal(classes="field"):
                yield Label("", classes="label")
                yield Checkbox("replace what is there (an earlier build)", value=st.force, id="force", compact=True)
            yield FieldError(id="out-error")
            yield EstimateView(id="estimate")
        yield NavBar(next_="Build ▸")
        yield Footer()

    def on_mount(self) -> None:
        self._validate()
        self._choices()

    @work(thread=True, exclusive=True, group="export-choices")
    def _choices(self) -> None:
        # the precision table (babel_edge.precision) is what both exporters accept
        from ...precision import names

        self.app.call_from_thread(self._set_choices, {"gguf": names("gguf"), "onnx": names("onnx")})

    def _set_choices(self, choices: dict | None, error: str | None = None) -> None:
        if not self.is_mounted:                  # the user left this step meanwhile
            return
        if choices is None:
            self.query_one("#formats-error", FieldError).show(error)
            return
        for fmt, attr, _, _ in FORMATS:
            sel = self.query_one(f"#{fmt}-precision", Select)
            current = sel.value
            sel.set_options([(c, c) for c in choices[fmt]])
            if current in choices[fmt]:
                sel.value = current

    @on(Checkbox.Changed)
    @on(Select.Changed)
    @on(Input.Changed, "#out")
    def _changed(self) -> None:
        self._validate()

    def _validate(self) -> bool:
        st = self.state
        for fmt, attr, _, _ in FORMATS:
            on_ = self.query_one(f"#{fmt}-on", Checkbox).value
            sel = self.query_one(f"#{fmt}-precision", Select)
            sel.disabled = not on_
            value = sel.value if isinstance(sel.value, str) else None
            if value:
                self._last[fmt] = value
            setattr(st, attr, value if on_ else None)
        ok = True
        fe = self.query_one("#formats-error", FieldError)
        if st.gguf_quant is None and st.onnx_precision is None:
            fe.show("choose at least one format: the benchmark compares exported files")
            ok = False
        else:
            fe.show(None)
        st.out_dir = self.query_one("#out", Input).value.strip()
        st.force = self.query_one("#force", Checkbox).value
        oe = self.query_one("#out-error", FieldError)
        msg = None
        out = Path(st.out_dir).expanduser() if st.out_dir else None
        if out is None:
            msg = "type a folder for the build (it is created)"
        elif out.exists() and not out.is_dir():
            msg = f"'{st.out_dir}' is a file; choose a folder"
        elif out.is_dir() and any(out.iterdir()) and not st.force:
            msg = f"'{st.out_dir}' is not empty: choose another folder or tick 'replace'"
        oe.show(msg)
        self.query_one("#estimate", EstimateView).show_state(st)
        return ok and msg is None

    def action_next(self) -> None:
        if not self._validate():
            return
        from .run import RunScreen
        self.app.push_screen(RunScreen())

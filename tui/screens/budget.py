"""Step 3: how much to remove and how; the estimate updates on every change."""
from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Checkbox, Footer, Input, Label, RadioButton, RadioSet, Static

from ..widgets import EstimateView, FieldError, NavBar, esc
from .base import WizardScreen

SCHEDULES = {"adaptive": "adaptive: layers whose experts the targets use widely keep more",
             "uniform": "uniform: every layer loses the same share",
             "search": "search: widths found by measuring the pruned model (adds minutes)"}
GRANULARITIES = {"neuron": "neuron: single FFN neurons", "expert": "expert: whole experts (groups of neurons)"}


def parse_vocab_size(text: str) -> tuple[int | None, str | None]:
    """(size or None for "all with evidence", None) or (None, what is wrong); '64k' works."""
    t = text.strip().lower().replace(",", "").replace("_", "")
    if not t:
        return None, None
    try:
        n = int(float(t[:-1]) * 1024) if t.endswith("k") else int(t)
    except ValueError:
        return None, "type a number of tokens, e.g. 65536 or 64k (empty: all with evidence)"
    if n < 1:
        return None, "the kept vocabulary must be at least one token"
    return n, None


def parse_rate(text: str, allow_zero: bool = False) -> tuple[float | None, str | None]:
    """(rate, None) or (None, what is wrong): a share in (0, 1) (0 too when the vocabulary is
    trimmed); '50%' is accepted."""
    from ...errors import UserError
    from ...prune.options import check_rate

    t = text.strip()
    try:
        rate = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        return None, "type the share of FFN parameters to remove, e.g. 0.5 (or 50%)"
    try:
        check_rate(rate, allow_zero)
    except UserError:
        return None, f"the rate must lie strictly between 0 and 1 (0.5 removes half), not {t}"
    return rate, None


class BudgetScreen(WizardScreen):
    STEP = 3
    BINDINGS = [*WizardScreen.BINDINGS, Binding("ctrl+f", "frontier", "Frontier")]

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
            with Horizontal(classes="field"):
                yield Label("Kept tokens", classes="label")
                yield Input(value="" if st.vocab_size is None else str(st.vocab_size),
                            placeholder="all with evidence", id="vocab-size", classes="short",
                            compact=True)
                yield FieldError(id="vocab-error")
            with Horizontal(classes="field"):
                yield Label("Healing", classes="label")
                yield Checkbox("heal the pruned model against the dense one (tens of minutes "
                               "on a CPU)", value=st.heal, id="heal", compact=True)
            yield EstimateView(id="estimate")
            with Horizontal(classes="field"):
                yield Button("Frontier…", id="frontier", compact=True)
                yield Static("measure which mix of pruning, vocabulary and quantization is best "
                             "for a size budget (ctrl+f)", classes="note")
        yield NavBar()
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#rate", Input).focus()
        self._update()

    def on_screen_resume(self) -> None:
        """Back from the frontier screen, whose "use best" may have changed the choices."""
        st = self.state
        self.query_one("#rate", Input).value = f"{st.rate:g}"
        self.query_one("#trim-vocab", Checkbox).value = st.trim_vocab
        self.query_one("#vocab-size", Input).value = "" if st.vocab_size is None else str(st.vocab_size)
        self.query_one("#heal", Checkbox).value = st.heal
        self._update()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "frontier":
            event.stop()
            self.action_frontier()
        else:
            super().on_button_pressed(event)

    def action_frontier(self) -> None:
        from .frontier import FrontierScreen
        self.app.push_screen(FrontierScreen())

    def _update(self) -> None:
        from ...errors import UserError

        verr = self.query_one("#vocab-error", FieldError)
        size, vmsg = parse_vocab_size(self.query_one("#vocab-size", Input).value)
        if vmsg is None:
            self.state.vocab_size = size
        verr.show(vmsg)
        err = self.query_one("#rate-error", FieldError)
        rate, msg = parse_rate(self.query_one("#rate", Input).value, self.state.trim_vocab)
        if rate is not None:
            self.state.rate = rate
            try:
                self.state.estimate()
            except UserError as e:        # e.g. below every layer's floor
                msg = str(e)
        err.show(msg)
        self.query_one("#estimate", EstimateView).show_state(self.state, msg)
        return msg or vmsg

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

    @on(Input.Changed, "#vocab-size")
    def _vocab_changed(self) -> None:
        self._update()

    @on(Checkbox.Changed, "#heal")
    def _heal(self, event: Checkbox.Changed) -> None:
        self.state.heal = event.value

    def action_next(self) -> None:
        if self._update():
            self.query_one("#rate", Input).focus()
            return
        from .export import ExportScreen
        self.app.push_screen(ExportScreen())

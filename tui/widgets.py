"""Small widgets shared by the screens: inline field errors, the plan estimate, nav bar."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.markup import escape as esc
from textual.containers import Horizontal
from textual.widgets import Button, Static


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def count(n: int) -> str:
    return f"{n / 1e6:,.2f}M" if n >= 1e6 else f"{n:,}"


class FieldError(Static):
    """One line next to a field; empty (and hidden) when the field is fine."""

    DEFAULT_CLASSES = "field-error"

    def show(self, message: str | None) -> None:
        self.update(esc(message or ""))
        self.set_class(bool(message), "-shown")


class EstimateView(Static):
    """The live estimate of what pruning gives (estimate.plan_estimate), or why there is none."""

    DEFAULT_CLASSES = "estimate"

    def show_state(self, state, problem: str | None = None) -> None:
        from ..errors import UserError

        if problem:
            self.update(f"[b]Estimate[/b]\nshown once the fields above are valid")
            return
        try:
            est = state.estimate()
        except UserError as e:
            self.update(f"[b]Estimate[/b]\n[red]{esc(str(e))}[/red]")
            return
        if est is None:
            self.update("[b]Estimate[/b]\nchecked once the model is known "
                        "(an embedded model that is not converted yet: prepare it on step 1)")
            return
        lines = [
            f"[b]Estimate[/b] (from the plan, before anything is built)",
            f"FFN neurons kept   {est.kept_neurons:,} of {sum(est.widths_before):,} "
            f"(removes {est.realized_rate:.1%}; widths: multiples of {est.unit})",
            f"parameters         {count(est.params_before)} → {count(est.params_after)} "
            f"({est.params_after / est.params_before:.1%})",
            f"FFN parameters     {count(est.ffn_before)} → {count(est.ffn_after)}",
        ]
        for name, (dense, pruned) in est.sizes.items():
            lines.append(f"{name:<18} ≈ {mb(dense)} → ≈ {mb(pruned)}")
        if est.rate == 0:
            lines.append("FFN                untouched: only the vocabulary is trimmed")
        elif est.widths is not None:
            from ..estimate import sparkline
            rates = [1 - w / f for w, f in zip(est.widths, est.widths_before)]
            lines.append(f"per-layer pruning  {sparkline(rates, 0.0, 1.0)}  "
                         f"({min(rates):.0%}–{max(rates):.0%}, layer 0 first)")
        else:
            how = ("by the search" if state.schedule == "search"
                   else "from the target languages' profile")
            lines.append(f"per-layer widths   decided {how} at build time (the totals above "
                         f"are exact)")
        if est.vocab_after is not None:
            lines.append(f"vocabulary         {est.vocab_before:,} → {est.vocab_after:,} tokens "
                         f"(in the figures above)")
        elif getattr(state, "trim_vocab", False):
            lines.append("vocabulary         trimmed to every token with evidence: not in these "
                         "figures (the count depends on the languages; give a size to include it)")
        if getattr(state, "heal", False):
            lines.append("healing            on: the pruned model is trained against the dense "
                         "one after cutting (sizes unchanged)")
        self.update("\n".join(lines))


class NavBar(Horizontal):
    """Back / next buttons at the bottom of a step."""

    DEFAULT_CLASSES = "nav"

    def __init__(self, back: str | None = "◂ Back", next_: str | None = "Next ▸", **kw) -> None:
        super().__init__(**kw)
        self._back, self._next = back, next_

    def compose(self) -> ComposeResult:
        if self._back:
            yield Button(self._back, id="back", compact=True)
        if self._next:
            yield Button(self._next, id="next", variant="primary", compact=True)

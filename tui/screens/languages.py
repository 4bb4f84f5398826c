"""Step 2: target languages, grouped by family, with script and corpus size; when the
model already has profiles (from an earlier build), each language shows its activation
by layer, its specific experts and its similarity to the languages already chosen
(estimate.language_previews, read in a worker)."""
from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Static

from ..widgets import FieldError, NavBar, esc
from .base import WizardScreen

COLUMNS = ("✓", "code", "language", "family", "script", "profile text", "activation by layer",
           "specific", "nearest chosen")


class LanguagesScreen(WizardScreen):
    STEP = 2
    BINDINGS = [Binding("space", "toggle", "Choose/unchoose", show=True)]

    def compose(self) -> ComposeResult:
        yield self.title_bar()
        with Vertical(classes="body"):
            yield Static("Which languages must the pruned model keep? (space or Enter toggles)",
                         classes="question")
            yield Static("", id="chosen")
            yield DataTable(id="langs", cursor_type="row", zebra_stripes=False)
            yield FieldError(id="langs-error")
            yield Static("loading the corpus…", id="preview-note", classes="note")
        yield NavBar()
        yield Footer()

    def on_mount(self) -> None:
        self._stats = []
        table = self.query_one("#langs", DataTable)
        for c in COLUMNS:
            table.add_column(c, key=c)
        self._load()

    @work(thread=True, exclusive=True, group="langs")
    def _load(self) -> None:
        st = self.state
        stats, previews, note = [], st.previews, ""
        try:
            from ...corpus import load_corpus
            stats = load_corpus().stats()
            if previews is None and st.fingerprint:
                from ...estimate import language_previews
                previews = language_previews(st.fingerprint)
        except Exception as e:  # noqa: BLE001 - previews are optional; say why they are missing
            note = f"no previews: {type(e).__name__}: {e}"
        self.app.call_from_thread(self._fill, stats, previews, note)

    def _fill(self, stats, previews, note: str) -> None:
        if not self.is_mounted:                  # the user left this step meanwhile
            return
        self.state.previews = previews
        self._stats = sorted(stats, key=lambda s: (s.family, s.code))
        known = {s.code for s in stats}
        self.state.langs = [l for l in self.state.langs if l in known]
        table = self.query_one("#langs", DataTable)
        table.clear()
        fam = None
        for s in self._stats:
            table.add_row(*self._cells(s, s.family if s.family != fam else ""), key=s.code)
            fam = s.family
        if not note:
            if previews is not None and previews.langs:
                n = len(previews.langs)
                note = (f"previews from this model's profiles ({n} language{'s' * (n != 1)}): "
                        f"activation by layer = effective share of experts used per layer "
                        f"(▁ few … █ many, layer 0 first); specific = experts high for it and low "
                        f"for the other previewed languages; nearest chosen = cosine similarity "
                        f"of expert frequencies")
            elif self.state.fingerprint is None:
                note = "previews appear once the model is checked and has a profile"
            else:
                note = ("no profile of this model yet: previews appear after a first build "
                        "(the build profiles the chosen languages)")
        self.query_one("#preview-note", Static).update(esc(note))
        self._refresh_chosen()

    def _cells(self, s, family: str) -> list[str]:
        from ...estimate import sparkline

        chosen = self.state.langs
        pv = self.state.previews
        p = pv.langs.get(s.code) if pv is not None else None
        spark, specific, near = "—", "—", "—"
        if p is not None:
            lo = min(min(x.layer_share) for x in pv.langs.values())
            hi = max(max(x.layer_share) for x in pv.langs.values())
            spark = sparkline(p.layer_share, lo, hi)
            specific = "—" if p.specific is None else str(p.specific)
            n = pv.nearest(s.code, chosen)
            if n is not None:
                near = f"{n[0]} {n[1]:+.2f}"
        return ["✓" if s.code in chosen else " ", s.code, s.name, family, s.script,
                f"{s.n_chars['profile']:,} chars", spark, specific, near]

    def _refresh_chosen(self) -> None:
        table = self.query_one("#langs", DataTable)
        fam = None
        for s in self._stats:
            cells = self._cells(s, s.family if s.family != fam else "")
            fam = s.family
            for col in ("✓", "nearest chosen"):
                table.update_cell(s.code, col, cells[COLUMNS.index(col)])
        chosen = self.state.langs
        self.query_one("#chosen", Static).update(
            f"chosen: [b]{', '.join(chosen)}[/b]" if chosen else "chosen: none yet")
        if chosen:
            self.query_one("#langs-error", FieldError).show(None)

    def toggle(self, code: str) -> None:
        langs = self.state.langs
        if code in langs:
            langs.remove(code)
        else:
            langs.append(code)
        self._refresh_chosen()

    @on(DataTable.RowSelected, "#langs")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.toggle(event.row_key.value)

    def action_toggle(self) -> None:
        table = self.query_one("#langs", DataTable)
        if table.row_count:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
            self.toggle(key.value)

    def action_next(self) -> None:
        if not self.state.langs:
            self.query_one("#langs-error", FieldError).show(
                "choose at least one target language: move to it and press space or Enter")
            self.query_one("#langs", DataTable).focus()
            return
        from .budget import BudgetScreen
        self.app.push_screen(BudgetScreen())

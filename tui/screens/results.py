"""Step 6: dense vs pruned, measured (runtime.bench via the build), the exporters' parity
figures and every artefact's path; `o` opens the HTML report of the build's profile
(report.write_report, the same call as `babel-edge report`, written next to the build)."""
from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Static

from ..widgets import esc
from .base import WizardScreen

PARITY_KEYS = (("gguf_dense", "GGUF dense"), ("gguf_pruned", "GGUF pruned"),
               ("onnx_dense", "ONNX dense"), ("onnx_pruned", "ONNX pruned"))


def _median(row: dict, key: str) -> float | None:
    v = row.get(key)
    return v.get("median") if isinstance(v, dict) else v


def bench_rows(bench: dict, targets: list[str]) -> tuple[list[str], list[list[str]]]:
    """(columns, rows) of the dense-vs-pruned table from bench.json: speed, then bits per byte
    per language on the unseen domain (the headline text; byte-identical for every model, so
    trimmed and full vocabularies compare)."""
    results = bench.get("results", [])
    langs = list(results[0].get("ppl", {})) if results else []
    cols = ["engine", "model", "file MB", "peak RSS MB", "prefill 512 tok/s", "decode tok/s"] + \
           [f"bits/byte {l}" + ("*" if l in targets else "") for l in langs]
    rows = []
    for r in results:
        cells = [r["backend"], r["label"], f"{r['file_bytes'] / 1e6:,.2f}",
                 f"{_median(r, 'peak_rss_mb'):,.0f}", f"{_median(r, 'prefill512_tok_s'):,.1f}",
                 f"{_median(r, 'decode_tok_s'):,.1f}"]
        cells += [f"{r['ppl'][l]['bits_per_byte']:.3f}" if "ppl" in r and l in r["ppl"] else "—"
                  for l in langs]
        rows.append(cells)
    return cols, rows


class ResultsScreen(WizardScreen):
    STEP = 6
    BINDINGS = [Binding("o", "open_report", "Open HTML report"),
                Binding("ctrl+n", "new_build", "New build"),
                Binding("escape", "back", "Back to export")]

    def __init__(self, summary: dict, bench: dict | None, out_dir: str | None = None) -> None:
        super().__init__()
        self.summary, self.bench = summary, bench
        self._out = out_dir
        self.report_path: Path | None = None

    @property
    def out_dir(self) -> Path:
        return Path(self._out or self.state.out_dir).expanduser()

    def compose(self) -> ComposeResult:
        s = self.summary
        yield self.title_bar()
        with VerticalScroll(classes="body"):
            yield Static(f"[b]{esc(str(s.get('model')))}[/b] pruned at rate {s.get('rate')} for "
                         f"[b]{', '.join(s.get('langs', []))}[/b]", classes="question")
            unseen = (self.bench or {}).get("unseen_domain")
            yield Static("Dense vs pruned (median over rounds; * = target language; bits per byte "
                         + (f"on unseen-domain text, '{esc(unseen)}', held out of every fitting step)"
                            if unseen else "on the eval split)"), classes="section")
            yield DataTable(id="bench", cursor_type="row", show_cursor=False)
            yield Static("", id="comparisons", classes="note")
            yield Static("Parity of each export against PyTorch", classes="section")
            yield DataTable(id="parity", show_cursor=False)
            timings = s.get("timings_s") or {}
            if timings:
                yield Static("took " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()),
                             classes="note")
            yield Static("Artefacts", classes="section")
            yield Static(esc(self._artefacts()), id="artefacts")
            yield Static("", id="report-status", classes="note")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#bench", DataTable)
        if self.bench:
            cols, rows = bench_rows(self.bench, list(self.summary.get("langs", [])))
            table.add_columns(*cols)
            for r in rows:
                table.add_row(*r)
            comps = [f"{c['backend']}: pruned/dense size ×{c['size_ratio']:.3f}, decode speed "
                     f"×{c['decode_speedup']:.2f} (ideal ×{c['ideal_decode_speedup']:.2f} from bytes "
                     f"read per token)" for c in self.bench.get("comparisons", [])]
            self.query_one("#comparisons", Static).update("\n".join(comps))
        else:
            table.add_column("no benchmark was run")
        par = self.query_one("#parity", DataTable)
        par.add_columns("file", "precision", "max |Δlogit|", "argmax agreement", "perplexity ratio",
                        "result")
        for key, label in PARITY_KEYS:
            p = (self.summary.get("exports", {}).get(key) or {}).get("parity")
            if p:
                par.add_row(label, str(p.get("precision", "")), f"{p['max_abs_diff']:.3g}",
                            f"{p['argmax_agreement']:.1%}", f"{p.get('ppl_ratio', float('nan')):.4f}",
                            "pass" if p.get("passed") else "FAIL")

    def _artefacts(self) -> str:
        art = self.summary.get("artefacts", {})
        width = max((len(k) for k in art), default=0)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in art.items()) or "none"

    # ---- keys
    def action_open_report(self) -> None:
        self.query_one("#report-status", Static).update("writing the HTML report…")
        self._report()

    @work(thread=True, exclusive=True, group="report")
    def _report(self) -> None:
        try:
            path = self.out_dir / "report" / "report.html"
            if not path.exists():
                from ...profile import load_profile
                from ...report import write_report
                write_report(load_profile(self.summary["artefacts"]["profile"]), path.parent)
        except Exception as e:  # noqa: BLE001 - shown inline
            self.app.call_from_thread(self._report_failed, str(e))
            return
        self.app.call_from_thread(self._opened, path)

    def _report_failed(self, message: str) -> None:
        if self.is_mounted:
            self.query_one("#report-status", Static).update(
                f"[red]could not write the report:[/red] {esc(message)}")

    def _opened(self, path: Path) -> None:
        if not self.is_mounted:                  # the user left this step meanwhile
            return
        self.report_path = path
        self.query_one("#report-status", Static).update(esc(f"report: {path}"))
        self.app.open_report(path)

    def action_new_build(self) -> None:
        for _ in range(len(self.app.screen_stack) - 2):     # back to step 1, choices kept
            self.app.pop_screen()

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()

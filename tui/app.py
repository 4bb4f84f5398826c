"""The babel-edge wizard: model → languages → budget → export → run → results.

A front end over the library: every step calls the same functions as the CLI
(models.describe_model, corpus.load_corpus, estimate.plan_estimate, pipeline.build,
report.write_report). Nothing heavy is imported at start-up: torch and transformers load
in worker threads when a step first needs them, so the first screen appears at once.

    make_app(...)          the factory shared by `babel-edge tui` and the tests
"""
from __future__ import annotations

import os
import threading
import webbrowser
from pathlib import Path
from typing import Callable

from textual import work
from textual.app import App
from textual.binding import Binding

from .state import WizardState


class BabelEdgeApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "babel-edge"
    SUB_TITLE = "prune a multilingual LLM to your languages"
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", priority=True)]

    def __init__(self, state: WizardState | None = None, builder: Callable | None = None,
                 opener: Callable[[str], object] | None = None) -> None:
        super().__init__()
        self.state = state or WizardState()
        self._builder = builder
        self.opener = opener or webbrowser.open
        self.current_cancel: threading.Event | None = None   # the running build's cancel event

    @property
    def builder(self) -> Callable:
        if self._builder is None:
            from ..pipeline import build
            self._builder = build
        return self._builder

    def on_mount(self) -> None:
        from .screens import ModelScreen
        self.push_screen(ModelScreen())
        self.call_after_refresh(self._preload_corpus)

    @work(thread=True, group="preload")
    def _preload_corpus(self) -> None:
        # step 2 lists the corpus languages; reading the corpus takes a few seconds
        try:
            from ..corpus import load_corpus
            load_corpus()
        except Exception:  # noqa: BLE001 - step 2 loads it again and shows the error
            pass

    def open_report(self, path: Path) -> None:
        self.opener(Path(path).resolve().as_uri())

    async def action_quit(self) -> None:
        if self.current_cancel is not None:
            self.current_cancel.set()      # the build stops at its next checkpoint
        self.exit()


def make_app(model: str | None = None, out_dir: str | None = None, *, tokens_per_lang: int | None = None,
             bench_rounds: int | None = None, other_langs=None, builder: Callable | None = None,
             opener: Callable[[str], object] | None = None) -> BabelEdgeApp:
    """The wizard with optional starting choices (None keeps the library's defaults)."""
    # progress bars of the library write to stderr, which the TUI owns: keep them quiet
    os.environ["BABEL_EDGE_QUIET"] = "1"
    st = WizardState()
    st.model = model
    if out_dir is not None:
        st.out_dir = out_dir
    if tokens_per_lang is not None:
        st.tokens_per_lang = tokens_per_lang
    if bench_rounds is not None:
        st.bench_rounds = bench_rounds
    if other_langs is not None:
        st.other_langs = tuple(other_langs)
    return BabelEdgeApp(st, builder=builder, opener=opener)


def main(argv=None) -> int:
    make_app().run()
    return 0

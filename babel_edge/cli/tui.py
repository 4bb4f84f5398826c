"""`babel-edge tui`: the same job as a keyboard-first wizard (babel_edge.tui)."""
from __future__ import annotations

import sys


def register(sub) -> None:
    s = sub.add_parser("tui", help="interactive wizard: choose languages and rate, build, export, bench",
                       description="A keyboard-first terminal wizard (Textual; the mouse works too) "
                                   "over the same library calls as 'build': model, languages, budget "
                                   "with a live estimate, export formats, the build with progress, "
                                   "and the results.")
    s.set_defaults(func=run)


def run(args) -> int:
    from ..tui import make_app

    app = make_app()
    app.run()
    if app.current_cancel is not None:       # quit during a build
        print("babel-edge tui: waiting for the build to stop at its next checkpoint…", file=sys.stderr)
    return 0

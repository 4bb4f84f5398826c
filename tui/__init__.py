"""babel_edge.tui: the Textual wizard over the CLI's library functions (`babel-edge tui`).

    from babel_edge.tui import make_app
    make_app().run()
"""
from .app import BabelEdgeApp, make_app

__all__ = ["BabelEdgeApp", "make_app"]

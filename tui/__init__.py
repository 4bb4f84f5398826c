"""babel_edge.tui: the Textual wizard over the CLI's library functions (issue 7; nothing here yet)."""

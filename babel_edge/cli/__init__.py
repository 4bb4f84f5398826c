"""The `babel-edge` command line: one module per verb, registered in pipeline order.

Each verb module has `register(subparsers)` (its parser, with defaults read from the
library) and `run(args)` (one call into the library with the same meaning, then a
table). Bad input raises one of `errors.user_error_types()`, which becomes one line on
stderr and exit code 2 — never a traceback.
"""
from __future__ import annotations

import argparse
import sys

from .. import __version__

# pipeline order: what there is -> profile -> report -> prune -> heal -> eval -> export -> serve/bench
# -> the main job -> the frontier -> the wizard
VERBS = ("models", "profile", "report", "prune", "heal", "evaluate", "export", "serve", "bench",
         "build", "frontier", "tui")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    p = argparse.ArgumentParser(
        prog="babel-edge",
        description="Profile which FFN experts of a multilingual LLM fire for which languages, "
                    "prune to a language set, export, serve and benchmark.")
    p.add_argument("--version", action="version", version=f"babel-edge {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for verb in VERBS:
        importlib.import_module(f"{__name__}.{verb}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    import os

    from .. import distributed as dd
    from ..errors import user_error_types

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    nproc = getattr(args, "nproc", None)
    if nproc and nproc > 1 and not dd.launched():          # --nproc N: run under torchrun
        i = argv.index("--nproc")
        return dd.relaunch(nproc, argv[:i] + argv[i + 2:])
    if dd.launched():
        dd.init(getattr(args, "device", "cpu") or "cpu")
        if not dd.is_main():
            os.environ["BABEL_EDGE_QUIET"] = "1"              # one set of progress bars
    try:
        return args.func(args)
    except user_error_types() as e:
        print(f"babel-edge {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("babel-edge: interrupted", file=sys.stderr)
        return 130
    finally:
        dd.finish()

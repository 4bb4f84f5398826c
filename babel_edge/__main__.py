"""`python -m babel_edge ...` (e.g. under torchrun) is the `babel-edge` command."""
import sys

from .cli import main

sys.exit(main())

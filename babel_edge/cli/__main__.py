"""`python -m babel_edge.cli ...` is the `babel-edge` command."""
import sys

from . import main

sys.exit(main())

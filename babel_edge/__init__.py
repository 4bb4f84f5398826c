"""babel-edge: keep only what your languages need.

Data flows one way: model -> experts -> profile -> plan -> pruned model ->
exports -> runtime -> reports. See ../shared/DESIGN.md (in the repository) for
the map and the facts measured so far.
"""
__version__ = "0.1.0"


def __getattr__(name):
    # `babel_edge.load_pruned(DIR)` without importing torch at package import time
    if name == "load_pruned":
        from .prune_io import load_pruned
        return load_pruned
    raise AttributeError(f"module 'babel_edge' has no attribute '{name}'")

"""babel-edge: keep only what your languages need.

Data flows one way: model -> experts -> profile -> plan -> pruned model ->
exports -> runtime -> reports. See ../shared/DESIGN.md (in the repository) for
the map and the facts measured so far.
"""
__version__ = "0.1.0"

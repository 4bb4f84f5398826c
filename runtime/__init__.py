"""babel_edge.runtime: inference engines over exported models, the server and the benchmark."""

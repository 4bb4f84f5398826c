"""babel_edge.exporters: GGUF and ONNX exporters of pruned models (issue 4; nothing here yet)."""

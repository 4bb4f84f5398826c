"""babel_edge.exporters: a (pruned) model into the runtimes people already use.

    gguf/      one GGUF file that stock llama.cpp runs (export_gguf); the architecture table
               (layout.py) sends per-layer FFN widths to `deci` or `gemma4`, or pads them
    onnx/      an ONNX directory with KV cache for onnxruntime and optimum (export_onnx)
    parity.py  every export is compared with the PyTorch model it came from, against the
               gate of its precision (babel_edge.precision); a miss leaves no file behind
"""

"""babel-edge: keep only what your languages need.

Data flows one way, and the packages follow it:

    models/      load a model (embedded, GGUF, HF directory); one adapter row per family
    corpus/      multilingual text with language tags, families and scripts
    experts.py   FFN neurons grouped into experts
    profile/     per-language expert activation statistics
    report/      heatmaps, shared/specific experts, language families
    prune/       options -> calibration -> schedule -> plan -> pruned model directory
    vocab/       vocabulary trimming (tokens the target languages need)
    exporters/   GGUF (llama.cpp) and ONNX (onnxruntime), parity-checked  [babel_edge.exporters]
    runtime/     engines, OpenAI-compatible server, benchmark              [babel_edge.runtime]
    evaluate.py  bits per byte and perplexity per language (one evaluator)
    pipeline.py  the main job (profile -> prune -> export -> bench)
    cli/         one module per command;  tui/ the wizard                  [babel_edge.tui]
Shared facts have one home: io.py (atomic files), precision.py (export precisions and
their parity gates), prune/plan.py (the pruning plan), errors.py (what a user can fix).
"""
__version__ = "0.1.0"


def __getattr__(name):
    # `babel_edge.load_pruned(DIR)` without importing torch at package import time
    if name == "load_pruned":
        from .prune.model_dir import load_pruned
        return load_pruned
    raise AttributeError(f"module 'babel_edge' has no attribute '{name}'")

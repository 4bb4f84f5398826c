"""The onnxruntime engine: a babel-edge ONNX export with its KV cache bound to the session.

One cache per engine, made when the engine opens and reused by every prefill: n_ctx
positions per layer, preallocated (numpy zeros: the pages are only touched as positions are
filled) and written in place by the graph (exporters/onnx/runner.py), so a decoded token
moves no cache through Python.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import _HFTokenizerMixin, _StepEngine


class OnnxEngine(_HFTokenizerMixin, _StepEngine):
    backend = "onnxruntime"

    def __init__(self, path: str | Path, device: str = "cpu", n_ctx: int = 2048,
                 threads: int | None = None):
        from transformers import AutoTokenizer

        from babel_edge.exporters.onnx import OnnxCausalLM

        self.path = Path(path)
        providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda"
                     else ["CPUExecutionProvider"])
        self.runner = OnnxCausalLM(self.path, providers=providers, threads=threads)
        self.name, self.device, self.n_ctx = self.path.name, device, n_ctx
        self._cache = self.runner.new_cache(1, capacity=n_ctx)
        self._init_tokenizer(AutoTokenizer.from_pretrained(str(self.path), fix_mistral_regex=False))

    def _step(self, ids, state):
        if state is None:                      # a new sequence: the engine's cache, emptied
            state = self.runner.reset(self._cache)
        logits, cache = self.runner.forward(np.array([ids], dtype=np.int64), state)
        return logits[0], cache

    def weight_bytes(self) -> int:
        from babel_edge.exporters.onnx.graph import ONNX_FILE, weight_bytes_per_token

        return weight_bytes_per_token(self.path / ONNX_FILE)

"""The onnxruntime engine: a babel-edge ONNX export with its KV cache."""
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
        self._init_tokenizer(AutoTokenizer.from_pretrained(str(self.path), fix_mistral_regex=False))

    def _step(self, ids, state):
        logits, cache = self.runner.forward(np.array([ids], dtype=np.int64), state)
        return logits[0], cache

    def weight_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.glob("model.onnx*"))

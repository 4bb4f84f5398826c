"""Inference engines behind one interface: tokenize and score (summed NLL per sequence).

Only the llama.cpp engine lives here so far; the PyTorch reference scorer is
`babel_edge.evaluate.torch_scorer`. Generation, onnxruntime and device choice
come with the runtime issue.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np


class LlamaCppEngine:
    """A GGUF file in stock llama.cpp (llama-cpp-python)."""

    def __init__(self, path: str | Path, n_ctx: int = 512, n_threads: int | None = None):
        from llama_cpp import Llama

        self.path = Path(path)
        self.n_ctx = n_ctx
        self.llm = Llama(model_path=str(self.path), n_ctx=n_ctx, logits_all=True,
                         n_threads=n_threads or os.cpu_count(), n_batch=n_ctx, verbose=False)

    def tokenize(self, text: str, special: bool = True) -> list[int]:
        """Token ids with BOS when the GGUF asks for it. special=True parses control-token text
        such as "<start_of_turn>" into the control token, as HF tokenizers do by default."""
        add_bos = self.llm.metadata.get("tokenizer.ggml.add_bos_token", "true") == "true"
        return self.llm.tokenize(text.encode(), add_bos=add_bos, special=special)

    def score(self, batch: Sequence[Sequence[int]]) -> list[float]:
        out = []
        for ids in batch:
            ids = list(ids)[: self.n_ctx]
            self.llm.reset()
            self.llm.eval(ids)
            logits = np.asarray(self.llm.scores[: len(ids) - 1], dtype=np.float64)  # [n-1, V]
            m = logits.max(axis=1, keepdims=True)
            logz = (m[:, 0] + np.log(np.exp(logits - m).sum(axis=1)))
            out.append(float((logz - logits[np.arange(len(ids) - 1), ids[1:]]).sum()))
        return out

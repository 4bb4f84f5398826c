"""The onnxruntime-genai engine: a babel-edge ONNX export through og.Model / og.Generator,
the runtime apps on phones, Windows (DirectML) and embedded boards ship.

Generation is genai's own loop (`append_tokens`, `generate_next_token`: search and sampling
in C++, the KV cache in one buffer of `max_length` positions written in place). Text goes
through the export's Hugging Face tokenizer, like the other engines; the export checks that
genai's own tokenizer reads the same files to the same ids (exporters/onnx/genai.py).
Scores and prefill use the generator too: `append_tokens` runs the prompt, and the graph's
logits for every position are read back with `get_output("logits")`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import Engine, _HFTokenizerMixin, _nll_rows


class GenaiEngine(_HFTokenizerMixin, Engine):
    backend = "onnxruntime-genai"

    def __init__(self, path: str | Path, device: str = "cpu", n_ctx: int = 2048,
                 threads: int | None = None):
        from transformers import AutoTokenizer

        from babel_edge.exporters.onnx import genai as GA

        self.path = Path(path)
        self.name, self.device, self.n_ctx = self.path.name, device, n_ctx
        # genai's own default is half the logical cores (one thread on a 2-core machine); use
        # what the other engines use: every core unless told
        self.model = GA.load(self.path, threads=threads or os.cpu_count(),
                             providers=["cuda"] if device == "cuda" else ())
        self.context_length = GA.read_config(self.path)["model"]["context_length"]
        self._init_tokenizer(AutoTokenizer.from_pretrained(str(self.path), fix_mistral_regex=False))

    def _generator(self, max_length: int, **search):
        import onnxruntime_genai as og

        params = og.GeneratorParams(self.model)
        params.set_search_options(max_length=min(max_length, self.context_length), **search)
        return og.Generator(self.model, params)

    def generate(self, ids, max_new_tokens, temperature=0.0, top_p=1.0, seed=None,
                 stop_at_eos=True):
        ids = [int(i) for i in ids]
        end = len(ids) + max_new_tokens
        search = dict(do_sample=temperature > 0, temperature=temperature or 1.0, top_p=top_p,
                      top_k=0, repetition_penalty=1.0)   # top_k 0: temperature and top-p alone
        if seed is not None:
            search["random_seed"] = int(seed)
        if not stop_at_eos:
            search["min_length"] = end           # EOS masked: exactly max_new_tokens
        gen = self._generator(end, **search)
        gen.append_tokens(np.array(ids, np.int32))
        for _ in range(max_new_tokens):
            if gen.is_done():                    # genai's EOS (genai_config) or context_length
                return
            gen.generate_next_token()
            tok = int(gen.get_next_tokens()[0])
            yield tok
            if stop_at_eos and tok in self.eos_ids:
                return

    def _logits(self, ids) -> np.ndarray:
        gen = self._generator(len(ids))
        gen.append_tokens(np.array([int(i) for i in ids], np.int32))
        return np.array(gen.get_output("logits"))[0]

    def prefill(self, ids):
        gen = self._generator(len(ids) + 1)
        gen.append_tokens(np.array([int(i) for i in ids], np.int32))

    def score(self, batch):
        return [_nll_rows(self._logits(ids), ids) for ids in batch]

    def weight_bytes(self) -> int:
        from babel_edge.exporters.onnx.graph import ONNX_FILE, weight_bytes_per_token

        return weight_bytes_per_token(self.path / ONNX_FILE)

    def close(self) -> None:
        self.model = None

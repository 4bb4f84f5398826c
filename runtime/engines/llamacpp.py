"""The llama.cpp engine: a GGUF file in stock llama.cpp (llama-cpp-python)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import END_OF_TURN, Engine, _nll_rows, own_chat_template

class LlamaCppEngine(Engine):
    """A GGUF file in stock llama.cpp (llama-cpp-python)."""
    backend = "llama.cpp"

    def __init__(self, path: str | Path, n_ctx: int = 2048, n_threads: int | None = None,
                 device: str = "cpu"):
        from llama_cpp import Llama

        self.path = Path(path)
        self.name, self.device, self.n_ctx = self.path.name, device, n_ctx
        # logits_all stays off: with it on, every prefill computes the 262k-wide head for every
        # position, which would make generation and prefill timings unfair. `score` turns the
        # per-position logits on for its own evaluations only.
        self.n_batch = min(n_ctx, 512)
        self.llm = Llama(model_path=str(self.path), n_ctx=n_ctx, logits_all=False,
                         n_threads=n_threads or os.cpu_count(), n_batch=self.n_batch,
                         n_gpu_layers=-1 if device == "cuda" else 0, verbose=False)
        md = self.llm.metadata
        self._add_bos = md.get("tokenizer.ggml.add_bos_token", "true") == "true"
        # the GGUF's own template only: a base model (no template) gets no chat format here
        self.chat_template = own_chat_template(md.get("tokenizer.chat_template"))
        self.bos_token = self._piece(self.llm.token_bos())
        self.eos_token = self._piece(self.llm.token_eos())
        self.eos_ids = {self.llm.token_eos()}
        eot = md.get("tokenizer.ggml.eot_token_id")
        if eot is not None:
            self.eos_ids.add(int(eot))
        for t in END_OF_TURN:
            ids = self.llm.tokenize(t.encode(), add_bos=False, special=True)
            if len(ids) == 1:
                self.eos_ids.add(ids[0])

    def _piece(self, tid: int) -> str:
        return self.llm.detokenize([tid], special=True).decode("utf-8", "replace") if tid >= 0 else ""

    def tokenize(self, text, special=True, add_bos=True):
        """Token ids, BOS when the GGUF asks for it. special=True parses control-token text
        such as "<start_of_turn>" into the control token, as HF tokenizers do by default."""
        return self.llm.tokenize(text.encode(), add_bos=add_bos and self._add_bos, special=special)

    def detokenize(self, ids):
        return self.llm.detokenize(list(ids)).decode("utf-8", "replace")

    def score(self, batch):
        """Summed NLL per sequence; sequences are cut at n_batch (512) tokens, the rows
        llama-cpp-python keeps logits for when logits_all is off at load time."""
        out = []
        self.llm._logits_all = True      # per-position logits for these evaluations only
        try:
            for ids in batch:
                ids = list(ids)[: self.n_batch]
                self.llm.reset()
                self.llm.eval(ids)
                out.append(_nll_rows(np.asarray(self.llm.scores[: len(ids) - 1]), ids))
        finally:
            self.llm._logits_all = False
            self.llm.reset()
        return out

    def generate(self, ids, max_new_tokens, temperature=0.0, top_p=1.0, seed=None,
                 stop_at_eos=True):
        if seed is not None:
            self.llm.set_seed(seed)
        n = 0
        try:
            # top_k=0 and min_p=0 leave the distribution to temperature and top-p alone
            for tok in self.llm.generate(list(ids), temp=temperature, top_p=top_p, top_k=0,
                                         min_p=0.0, repeat_penalty=1.0, reset=True):
                yield tok
                n += 1
                if (stop_at_eos and tok in self.eos_ids) or n >= max_new_tokens:
                    return
        finally:
            # llama-cpp-python builds a sampler per generate() (~3 MB of native memory for a
            # 262k vocabulary) that a reference cycle keeps until the garbage collector runs:
            # free it now, so a long-running server's memory stays flat
            sampler = getattr(self.llm, "_sampler", None)
            if sampler is not None:
                sampler.close()
                self.llm._sampler = None

    def prefill(self, ids):
        self.llm.reset()
        self.llm.eval(list(ids))

    def weight_bytes(self) -> int:
        from gguf import GGUFReader

        return int(sum(t.n_bytes for t in GGUFReader(str(self.path)).tensors))

    def close(self) -> None:
        self.llm.close()

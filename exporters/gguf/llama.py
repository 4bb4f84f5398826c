"""The llama.cpp side of GGUF export: its own quantizer, and running the result.

Quantization goes through llama.cpp's `llama_model_quantize` (exposed by
llama-cpp-python), so the tensor-type mix is exactly what `llama-quantize`
produces: Q4_K_M keeps some attn_v/ffn_down at Q6_K, and a tensor whose row
length is not a multiple of the type's block (256 for K-quants: ffn_down rows
are one FFN width long) falls back per tensor (Q4_K -> Q5_0, Q6_K -> Q8_0, or F16
when not even a multiple of 32). `tensor_types` reads what was really written.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import re
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

@contextlib.contextmanager
def _quiet_llama(log: list[str] | None = None):
    """Keep llama.cpp's C-side log lines off the terminal.

    llama-cpp-python's `logging` switch does not catch every line (the quantizer's
    per-tensor notes, KV-cache warnings), so file descriptor 2 itself is pointed at
    a temporary file for the duration; its text goes to `log` when given (for errors).
    """
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if log is not None:
                tmp.seek(0)
                log.append(tmp.read().decode("utf-8", "replace"))


def quantize(src: Path, dst: Path, ftype: str, keep: dict[str, str] | None = None,
             threads: int | None = None) -> None:
    """llama.cpp's quantizer: `src` (F32 GGUF) -> `dst` at `ftype` (a llama_cpp.LLAMA_FTYPE_*
    name, babel_edge.precision's `llama_ftype`).

    keep: {regex on tensor names: ggml type name} overrides (e.g. tensors that must
    keep a wide exponent range stay F32/BF16)."""
    import gguf
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = threads or os.cpu_count() or 1
    params.ftype = getattr(llama_cpp, ftype)
    overrides = None
    if keep:
        arr = (llama_cpp.llama_model_tensor_override * (len(keep) + 1))()
        pats = [p.encode() for p in keep]          # kept alive until the call returns
        for i, (p, t) in enumerate(zip(pats, keep.values())):
            arr[i].pattern = p
            arr[i].type = int(gguf.GGMLQuantizationType[t.upper()])
        arr[len(keep)].pattern = None
        params.tt_overrides = ctypes.cast(arr, ctypes.POINTER(llama_cpp.llama_model_tensor_override))
        overrides = (arr, pats)
    log: list[str] = []
    with _quiet_llama(log):
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    del overrides
    if rc != 0:
        tail = " | ".join(log[0].strip().splitlines()[-3:]) if log else ""
        raise RuntimeError(f"llama.cpp's quantizer failed ({ftype}, code {rc}): {tail}")


def tensor_types(path: Path) -> dict:
    """What a GGUF holds: tensor count and bytes by type, and types per tensor kind."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    count, nbytes, by_kind, kind_bytes, rows = Counter(), Counter(), {}, Counter(), {}
    for t in reader.tensors:
        ty = t.tensor_type.name
        count[ty] += 1
        nbytes[ty] += int(t.n_bytes)
        kind = re.sub(r"^blk\.\d+\.", "blk.*.", t.name)
        by_kind.setdefault(kind, Counter())[ty] += 1
        kind_bytes[kind] += int(t.n_bytes)
        rows.setdefault(kind, set()).add(int(t.shape[0]))
    return {"count": dict(count.most_common()), "bytes": dict(nbytes.most_common()),
            "by_tensor": {k: dict(v.most_common()) for k, v in sorted(by_kind.items())},
            "bytes_by_tensor": dict(sorted(kind_bytes.items())),
            "row_lengths": {k: sorted(v) for k, v in sorted(rows.items())},
            "elements": int(sum(int(t.n_elements) for t in reader.tensors))}


class LlamaRunner:
    """A GGUF in stock llama.cpp: tokenize, logits of every position, greedy text."""

    def __init__(self, path: Path, n_ctx: int = 512, threads: int | None = None):
        from llama_cpp import Llama

        # ggml's worker threads spin-wait; on a busy machine more threads than free cores
        # is far slower than one (2.2 s vs 10 ms per call on a tiny model), so callers pick.
        threads = threads or os.cpu_count() or 1
        log: list[str] = []
        try:
            with _quiet_llama(log):
                self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                                 logits_all=True, n_threads=threads, n_threads_batch=threads,
                                 verbose=False)
        except ValueError as e:
            errors = [l for l in log[0].splitlines() if "error" in l.lower()] if log else []
            raise RuntimeError(f"llama.cpp cannot load {path.name}: "
                               f"{' | '.join(errors[-2:]) or e}") from e

    def tokenize(self, text: str) -> list[int]:
        # add_bos=True means "add the special tokens the GGUF asks for" (add_bos/add_eos keys)
        return self.llm.tokenize(text.encode(), add_bos=True, special=False)

    def logits(self, ids: Sequence[int], decode_steps: int = 0) -> np.ndarray:
        """Logits [T, V] of one sequence: all but the last `decode_steps` tokens in one batch,
        then those one at a time through the KV cache — the path generation takes."""
        ids = list(ids)
        k = max(0, min(decode_steps, len(ids) - 1))
        self.llm.reset()
        self.llm.eval(ids[:len(ids) - k])
        for tok in ids[len(ids) - k:]:
            self.llm.eval([tok])
        return np.array(self.llm.scores[: len(ids)], dtype=np.float32)

    def generate(self, prompt: str, max_tokens: int = 12) -> str:
        self.llm.reset()
        out = self.llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0)
        return out["choices"][0]["text"]

    def close(self) -> None:
        if self.llm is not None:
            with _quiet_llama():
                self.llm.close()
            self.llm = None

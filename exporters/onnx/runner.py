"""An exported causal LM in onnxruntime: prefill and one-token steps with its KV cache,
and optimum's ORTModelForCausalLM with the cache shape read from the graph."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import UserError
from . import graph as G

DECODE_STEPS = 8             # parity runs the last tokens one at a time through the KV cache


class OnnxCausalLM:
    """An exported causal LM in an onnxruntime session, run with its KV cache.

    The cache is a dict {past_key_values.{i}.key|value: array [B, kv_heads, P, head_dim]};
    `forward` takes new tokens and the cache and returns logits and the grown cache.
    """

    def __init__(self, path: str | Path, providers: Sequence[str] | None = None,
                 threads: int | None = None, spinning: bool | None = None):
        import onnxruntime as ort

        path = Path(path)
        file = path / G.ONNX_FILE if path.is_dir() else path
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        if spinning is not None:   # idle threads busy-wait by default: fast alone, costly when shared
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        self.session = ort.InferenceSession(str(file), so,
                                            providers=list(providers or ["CPUExecutionProvider"]))
        ins = {i.name: i for i in self.session.get_inputs()}
        self.input_names = list(ins)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.kv_names = [n for n in self.input_names if n.startswith("past_key_values.")]
        if not self.kv_names or "logits" not in self.output_names:
            raise UserError(f"{file} is not a causal LM exported with KV cache "
                            f"(inputs {self.input_names[:4]}…)")
        first = ins[self.kv_names[0]]
        self.n_layers = len(self.kv_names) // 2
        self.kv_heads, self.head_dim = int(first.shape[1]), int(first.shape[3])
        self.kv_dtype = np.float16 if "float16" in first.type else np.float32
        # present.{i}.key → past_key_values.{i}.key, in output order
        self._present = [(j, n.replace("present.", "past_key_values.", 1))
                         for j, n in enumerate(self.output_names) if n.startswith("present.")]
        self._logits = self.output_names.index("logits")

    def empty_cache(self, batch: int = 1) -> dict[str, np.ndarray]:
        return {n: np.zeros((batch, self.kv_heads, 0, self.head_dim), self.kv_dtype)
                for n in self.kv_names}

    def forward(self, ids: np.ndarray, cache: dict[str, np.ndarray] | None = None
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """ids [B, T] → (logits [B, T, V] float32, cache grown by T). No padding: the mask is all ones."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim == 1:
            ids = ids[None]
        b, t = ids.shape
        cache = cache if cache is not None else self.empty_cache(b)
        past = cache[self.kv_names[0]].shape[2]
        feed = {"input_ids": ids, "attention_mask": np.ones((b, past + t), np.int64), **cache}
        if "position_ids" in self.input_names:
            feed["position_ids"] = np.broadcast_to(np.arange(past, past + t, dtype=np.int64), (b, t)).copy()
        out = self.session.run(None, feed)
        return (out[self._logits].astype(np.float32, copy=False),
                {name: out[j] for j, name in self._present})

    def logits(self, ids: Sequence[int], decode_steps: int = 0) -> np.ndarray:
        """Logits [T, V] of one sequence: prefill all but the last `decode_steps` tokens, then
        feed those one at a time through the cache — the path generation takes."""
        ids = list(ids)
        k = max(0, min(decode_steps, len(ids) - 1))
        out, cache = self.forward(np.array([ids[:len(ids) - k]]))
        parts = [out[0]]
        for tok in ids[len(ids) - k:]:
            out, cache = self.forward(np.array([[tok]]), cache)
            parts.append(out[0])
        return np.concatenate(parts, axis=0)

    def generate(self, ids: Sequence[int], max_new_tokens: int,
                 eos_token_id: int | Sequence[int] | None = None) -> list[int]:
        """Greedy continuation (new tokens only)."""
        eos = {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id or ())
        out, cache = self.forward(np.array([list(ids)]))
        new: list[int] = []
        for _ in range(max_new_tokens):
            tok = int(out[0, -1].argmax())
            new.append(tok)
            if tok in eos:
                break
            out, cache = self.forward(np.array([[tok]]), cache)
        return new


def load_ort_model(path: str | Path, **kwargs):
    """optimum's `ORTModelForCausalLM` for an exported directory, with its KV-cache shape
    taken from the graph.

    optimum-onnx 0.1.0 guesses the shape of the empty first-step cache from config.json:
    Gemma 2 is missing from its tables, so it uses num_attention_heads and
    hidden_size / num_attention_heads, and the first `generate` step fails on any model
    with grouped-query attention ("Got invalid dimensions for input:
    past_key_values.0.key"). The graph's own input shapes are the truth; set them.
    For the other supported families the stock `from_pretrained` works unchanged.
    """
    from optimum.onnxruntime import ORTModelForCausalLM

    m = ORTModelForCausalLM.from_pretrained(str(path), **kwargs)
    kv = [i for i in m.session.get_inputs() if i.name.startswith("past_key_values.")]
    if kv and isinstance(kv[0].shape[1], int) and isinstance(kv[0].shape[3], int):
        m.num_key_value_heads, m.embed_size_per_head = kv[0].shape[1], kv[0].shape[3]
    return m


def onnx_logits_fn(model: OnnxCausalLM | str | Path, decode_steps: int = DECODE_STEPS):
    """A parity.LogitsFn over an exported model (prefill + `decode_steps` cached steps)."""
    runner = model if isinstance(model, OnnxCausalLM) else OnnxCausalLM(model)
    return lambda ids: runner.logits(ids, decode_steps=decode_steps)



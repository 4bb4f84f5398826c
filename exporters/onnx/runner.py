"""An exported causal LM in onnxruntime: prefill and one-token steps through a KV cache that
stays bound to the session, and optimum's ORTModelForCausalLM with the cache shape read from
the graph.

Decoding moves no cache through Python. A babel-edge export (GroupQueryAttention, build.py)
gets one buffer per layer and K/V, [B, kv_heads, capacity, head_dim], bound both as
`past_key_values.*` and as `present.*`: the graph writes the new positions into it in place.
The buffers are numpy arrays wrapped as OrtValues without a copy, so growing one (when a
sequence outgrows its capacity) is a numpy copy of the filled part, once. A graph whose
present is past + new positions (exports made before build.py, traced by optimum) is run
with I/O binding too: each step's present OrtValues are bound as the next step's past.
The buffers live in host memory whatever the execution provider (with CUDA, onnxruntime
copies what a step reads); device-resident buffers are for a GPU machine to add and measure.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import UserError
from . import graph as G

DECODE_STEPS = 8             # parity runs the last tokens one at a time through the KV cache
CAPACITY = 256               # positions a new cache holds before it grows (doubling)


@dataclass
class KVCache:
    """The KV cache of one batch of sequences: `length` positions filled.

    shared: numpy buffers [B, kv_heads, capacity, head_dim] per past_key_values name, also
    bound as the matching present output (capacity ≥ length). Otherwise (a concatenating
    graph): OrtValues of exactly `length` positions."""
    batch: int
    length: int = 0
    buffers: dict = field(default_factory=dict)       # name -> np.ndarray (shared) | OrtValue
    binding: object = None                            # the session's IOBinding for this cache

    @property
    def capacity(self) -> int:
        first = next(iter(self.buffers.values()), None)
        return first.shape[2] if isinstance(first, np.ndarray) else self.length


class OnnxCausalLM:
    """An exported causal LM in an onnxruntime session, run with its KV cache.

    `forward(ids, cache)` takes new tokens [B, T] and a KVCache (None: a new one) and returns
    logits [B, T, V] and the cache grown by T (the same object: it is updated in place).
    """

    def __init__(self, path: str | Path, providers: Sequence[str] | None = None,
                 threads: int | None = None, spinning: bool | None = None,
                 profile_prefix: str | None = None):
        import onnxruntime as ort

        path = Path(path)
        file = path / G.ONNX_FILE if path.is_dir() else path
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        if spinning is not None:   # idle threads busy-wait by default: fast alone, costly when shared
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        if profile_prefix:         # onnxruntime's per-kernel timings; session.end_profiling() writes them
            so.enable_profiling, so.profile_file_prefix = True, profile_prefix
        self.providers = list(providers or ["CPUExecutionProvider"])
        self.session = ort.InferenceSession(str(file), so, providers=self.providers)
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
        self.present = {n: n.replace("past_key_values.", "present.", 1) for n in self.kv_names}
        self.shared = G.writes_kv_in_place(file)

    # ------------------------------------------------------------------ cache
    def new_cache(self, batch: int = 1, capacity: int = CAPACITY) -> KVCache:
        """An empty cache with its own binding; outputs bound in a fixed order (logits, then
        present.* in layer order), which is the order the session returns them in."""
        cache = KVCache(batch, binding=self.session.io_binding())
        cache.binding.bind_output("logits", "cpu")
        if self.shared:
            self._bind_buffers(cache, {n: np.zeros((batch, self.kv_heads, capacity, self.head_dim),
                                                   self.kv_dtype) for n in self.kv_names})
        else:
            for name in self.kv_names:
                cache.binding.bind_output(self.present[name], "cpu")
        return cache

    def reset(self, cache: KVCache) -> KVCache:
        """Empty `cache` for a new sequence, keeping its buffers."""
        cache.length = 0
        if not self.shared:
            cache.buffers = {}
        return cache

    def _bind_buffers(self, cache: KVCache, buffers: dict) -> None:
        import onnxruntime as ort

        cache.buffers = buffers
        for name, arr in buffers.items():
            v = ort.OrtValue.ortvalue_from_numpy(arr)
            cache.binding.bind_ortvalue_input(name, v)
            cache.binding.bind_ortvalue_output(self.present[name], v)

    def _grow(self, cache: KVCache, need: int) -> None:
        cap = cache.capacity
        while cap < need:
            cap *= 2
        grown = {}
        for name, old in cache.buffers.items():
            new = np.zeros(old.shape[:2] + (cap,) + old.shape[3:], old.dtype)
            new[:, :, :cache.length] = old[:, :, :cache.length]
            grown[name] = new
        self._bind_buffers(cache, grown)

    # ------------------------------------------------------------------ running
    def forward(self, ids: np.ndarray, cache: KVCache | None = None
                ) -> tuple[np.ndarray, KVCache]:
        """ids [B, T] → (logits [B, T, V] float32, cache grown by T). No padding: the mask is all ones."""
        import onnxruntime as ort

        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim == 1:
            ids = ids[None]
        b, t = ids.shape
        cache = cache if cache is not None else self.new_cache(b, max(CAPACITY, t))
        if cache.batch != b:
            raise ValueError(f"a cache for {cache.batch} sequences fed {b}")
        past = cache.length
        bind = cache.binding
        if self.shared and past + t > cache.capacity:
            self._grow(cache, past + t)
        bind.bind_cpu_input("input_ids", ids)
        bind.bind_cpu_input("attention_mask", np.ones((b, past + t), np.int64))
        if "position_ids" in self.input_names:
            bind.bind_cpu_input("position_ids", np.broadcast_to(
                np.arange(past, past + t, dtype=np.int64), (b, t)).copy())
        # outputs ORT allocates are rebound each run (a filled one would be taken as preallocated)
        bind.bind_output("logits", "cpu")
        if not self.shared:
            for name in self.kv_names:
                v = cache.buffers.get(name)
                if v is None:
                    v = ort.OrtValue.ortvalue_from_numpy(
                        np.zeros((b, self.kv_heads, 0, self.head_dim), self.kv_dtype))
                bind.bind_ortvalue_input(name, v)
                bind.bind_output(self.present[name], "cpu")
        self.session.run_with_iobinding(bind)
        outs = bind.get_outputs()          # logits, then present.* (new_cache's order)
        if not self.shared:
            cache.buffers = dict(zip(self.kv_names, outs[1:]))
        cache.length = past + t
        return outs[0].numpy().astype(np.float32, copy=False), cache

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

"""Write the decoder graph of a causal LM straight from its weights, with onnxruntime's
fused operators and a KV cache that can live in one preallocated buffer.

Why not trace: the traced graph (optimum's legacy tracer) spells every `view` as a chain of
Shape/Gather/Unsqueeze/Concat, RMSNorm as Pow/ReduceMean/Sqrt/Div, and attention as mask
arithmetic, repeat_kv and a Concat of the whole cache: 5,605 nodes for Gemma 3 270M, each
dispatched per decoded token, and a cache copied into a new tensor at every step. Here the
same model is 430 nodes, each layer

    h ──SkipSimplifiedLayerNorm──► x ─► q,k,v MatMul (+bias) [─► per-head RMSNorm of q,k]
        ─► RotaryEmbedding(q, k) ─► GroupQueryAttention (causal or sliding mask, GQA,
        softcap, KV append) ─► o MatMul [─► post-attention norm] ─► SkipSimplifiedLayerNorm
        ─► gate/up MatMul ─► act(gate)·up ─► down MatMul [─► post-FFN norm] ─► next layer

I/O (the names optimum, onnxruntime-genai and our runner use):
    input_ids [B,T] int64, attention_mask [B,P+T] int64 (ones; its row sums tell
    GroupQueryAttention how long each sequence is: no left padding), position_ids [B,T]
    int64, past_key_values.{i}.key/value [B, kv_heads, S, head_dim]  →  logits [B,T,V],
    present.{i}.key/value [B, kv_heads, S', head_dim].
The cache works both ways GroupQueryAttention offers: fed a past of exactly P positions
(optimum, a plain session) the present is the past plus T new positions (S' = P+T); fed a
buffer of S ≥ P+T positions bound as both past and present (our engine, onnxruntime-genai
with `past_present_share_buffer`), the new positions are written into it in place (S' = S)
and nothing is copied. Sliding-window layers keep the whole history and mask it, so every
layer's cache has the same length.
Rotary angles are computed in the graph from position_ids (cos/sin of the T new positions
only), so the graph holds no table sized by a context limit (`rope_table=N` instead puts a
table of N positions in the graph, folded when the session starts, and lets
GroupQueryAttention rotate: two nodes fewer per layer, N×head_dim×4 bytes more memory).

What differs between the supported families is read from the model itself (its modules'
`scaling`, `sliding_window`, `attn_logit_softcapping`, rotary modules, norms) plus the few
facts in FAMILY below. Per-layer FFN widths need nothing: each MatMul takes its weight's shape;
a trimmed vocabulary is a smaller embedding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...errors import UserError

OPSET = 21        # Gelu(approximate="tanh") needs 20
MS = "com.microsoft"


@dataclass(frozen=True)
class Family:
    norm_offset: float = 0.0     # RMSNorm scale = weight + offset (Gemma stores w - 1)
    embed_scale: bool = False    # embeddings × √hidden (Gemma)
    sandwich: bool = False       # norms after attention and after the FFN too (Gemma 2/3)
    qk_norm: bool = False        # per-head RMSNorm of q and k before rotary (Gemma 3)
    window_from_config: bool = False   # every layer uses config.sliding_window (Mistral)


FAMILY = {
    "llama": Family(),
    "mistral": Family(window_from_config=True),
    "qwen2": Family(),
    "gemma2": Family(norm_offset=1.0, embed_scale=True, sandwich=True),
    "gemma3_text": Family(norm_offset=1.0, embed_scale=True, sandwich=True, qk_norm=True),
}
# hidden_act / hidden_activation → how the FFN's gate is activated
ACTIVATIONS = ("silu", "swish", "gelu_pytorch_tanh", "gelu_new", "gelu")


class _Graph:
    """Nodes and initializers with unique names; `op` returns the output name(s)."""

    def __init__(self):
        self.nodes, self.inits, self._consts = [], [], {}

    def init(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def const(self, value, dtype) -> str:
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            self._consts[key] = self.init(f"/const/{len(self._consts)}", arr)
        return self._consts[key]

    def op(self, op_type: str, inputs, name: str, n_out: int = 1, domain: str = "",
           outputs=None, **attrs):
        from onnx import helper

        outs = list(outputs) if outputs else [f"{name}/output_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=name, domain=domain,
                                           **attrs))
        return outs[0] if n_out == 1 else outs


def _np(t) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _rope_inv_freq(rotary) -> tuple[np.ndarray, float]:
    """inv_freq [head_dim/2] and the cos/sin scale of a transformers rotary module whose
    frequencies do not depend on the sequence length (default, linear, llama3, yarn)."""
    kind = getattr(rotary, "rope_type", "default")
    if kind in ("dynamic", "longrope"):
        raise UserError(f"rope scaling '{kind}' changes with the sequence length; the ONNX "
                        f"exporter supports default, linear, llama3 and yarn rope")
    return _np(rotary.inv_freq), float(getattr(rotary, "attention_scaling", 1.0))


def build_decoder(model, opset: int = OPSET, rope_table: int | None = None):
    """The fp32 decoder graph of `model` (a supported causal LM in eval mode) as an ONNX
    ModelProto. Weight MatMuls are MatMul(x, Wᵀ) with Wᵀ an initializer (what the weight
    quantizers expect); a tied LM head is MatMul(x, Transpose(embedding))."""
    from onnx import TensorProto, helper

    from ...models.adapters import decoder_layers, ffn_layers, model_adapter

    cfg = model.config
    model_type = cfg.model_type
    if model_type not in FAMILY:
        model_adapter(model)                       # the loader's message for unknown families
        raise UserError(f"no ONNX graph recipe for '{model_type}'")
    fam = FAMILY[model_type]
    act = getattr(cfg, "hidden_activation", None) or getattr(cfg, "hidden_act", "silu")
    if act not in ACTIVATIONS:
        raise UserError(f"FFN activation '{act}' is not supported by the ONNX exporter "
                        f"(supported: {', '.join(ACTIVATIONS)})")
    if opset < 20:
        raise UserError(f"ONNX opset {opset} is too old for this graph; use 20 or newer")
    layers = decoder_layers(model)
    ffns = ffn_layers(model)
    base = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    n_layers = len(layers)
    n_heads, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    hidden = cfg.hidden_size
    eps = float(cfg.rms_norm_eps)
    emb_w = base.embed_tokens.weight
    vocab = emb_w.shape[0]

    g = _Graph()
    f32 = np.float32

    def norm_w(module, name):
        return g.init(name, _np(module.weight) + f32(fam.norm_offset))

    def linear(x, module, name, tname):
        w = g.init(f"{tname}.weight.T", _np(module.weight).T)
        y = g.op("MatMul", [x, w], f"{name}/MatMul")
        if getattr(module, "bias", None) is not None:
            y = g.op("Add", [y, g.init(f"{tname}.bias", _np(module.bias))], f"{name}/Add")
        return y

    def rms(x, w, name):
        return g.op("SimplifiedLayerNormalization", [x, w], name, axis=-1, epsilon=eps)

    # ---- embedding ----------------------------------------------------------------
    emb_name = g.init("model.embed_tokens.weight", _np(emb_w))
    h = g.op("Gather", [emb_name, "input_ids"], "/model/embed_tokens/Gather", axis=0)
    if fam.embed_scale:
        h = g.op("Mul", [h, g.const(math.sqrt(hidden), f32)], "/model/embed_scale/Mul")

    # ---- what every attention layer shares -------------------------------------------
    # seqlens_k = tokens so far - 1 per row; total_sequence_length = mask width (int32)
    s = g.op("ReduceSum", ["attention_mask", g.const([1], np.int64)], "/model/mask/ReduceSum",
             keepdims=0)
    s = g.op("Sub", [s, g.const(1, np.int64)], "/model/mask/Sub")
    seqlens_k = g.op("Cast", [s], "/model/mask/seqlens_k", to=TensorProto.INT32)
    shape = g.op("Shape", ["attention_mask"], "/model/mask/Shape")
    total = g.op("Gather", [shape, g.const(1, np.int64)], "/model/mask/Gather", axis=0)
    total = g.op("Cast", [total], "/model/mask/total_seq_len", to=TensorProto.INT32)
    # rotary: cos/sin of the new positions only, rows indexed 0..B·T-1 for GroupQueryAttention
    ids_shape = g.op("Shape", ["input_ids"], "/model/rotary/Shape")
    n_rows = g.op("ReduceProd", [ids_shape], "/model/rotary/ReduceProd", keepdims=0)
    rows = g.op("Range", [g.const(0, np.int64), n_rows, g.const(1, np.int64)], "/model/rotary/Range")
    gqa_pos = g.op("Reshape", [rows, ids_shape], "/model/rotary/rows")
    if rope_table:     # a table of every position up to rope_table, folded when the session starts
        pos_col = g.const(np.arange(rope_table, dtype=np.float32).reshape(-1, 1), f32)
    else:
        pos_f = g.op("Cast", ["position_ids"], "/model/rotary/Cast", to=TensorProto.FLOAT)
        pos_col = g.op("Reshape", [pos_f, g.const([-1, 1], np.int64)], "/model/rotary/Reshape")
    rope_tables: dict[int, tuple[str, str]] = {}

    def rope(rotary) -> tuple[str, str]:
        if id(rotary) not in rope_tables:
            inv, scale = _rope_inv_freq(rotary)
            k = len(rope_tables)
            p = f"/model/rotary{k}"
            freqs = g.op("Mul", [pos_col, g.init(f"{p}/inv_freq", inv.reshape(1, -1))], f"{p}/Mul")
            cos, sin = g.op("Cos", [freqs], f"{p}/Cos"), g.op("Sin", [freqs], f"{p}/Sin")
            if scale != 1.0:
                cos = g.op("Mul", [cos, g.const(scale, f32)], f"{p}/cos_scale")
                sin = g.op("Mul", [sin, g.const(scale, f32)], f"{p}/sin_scale")
            rope_tables[id(rotary)] = (cos, sin)
        return rope_tables[id(rotary)]

    global_rotary = base.rotary_emb
    local_rotary = getattr(base, "rotary_emb_local", None)

    # ---- decoder layers ----------------------------------------------------------------
    residual = None          # the residual stream entering the current norm (None: h is it)
    pending = h              # what gets added to the residual before the next norm
    inputs_kv, outputs_kv = [], []
    for i, (layer, ffn) in enumerate(zip(layers, ffns)):
        p = f"/model/layers.{i}"
        t = f"model.layers.{i}"
        attn = layer.self_attn

        def add_norm(x_add, w, name):
            """residual += x_add, then the norm of the new residual (fused)."""
            nonlocal residual
            if residual is None:
                residual = x_add
                return rms(x_add, w, name)
            out, _, _, new_res = g.op("SkipSimplifiedLayerNormalization", [x_add, residual, w],
                                      name, n_out=4, domain=MS, epsilon=eps)
            residual = new_res
            return out

        x = add_norm(pending, norm_w(layer.input_layernorm, f"{t}.input_layernorm.weight"),
                     f"{p}/input_layernorm")
        q = linear(x, attn.q_proj, f"{p}/self_attn/q_proj", f"{t}.self_attn.q_proj")
        k = linear(x, attn.k_proj, f"{p}/self_attn/k_proj", f"{t}.self_attn.k_proj")
        v = linear(x, attn.v_proj, f"{p}/self_attn/v_proj", f"{t}.self_attn.v_proj")
        if fam.qk_norm:
            for name, heads in (("q", n_heads), ("k", n_kv)):
                src = q if name == "q" else k
                r = g.op("Reshape", [src, g.const([0, 0, heads, head_dim], np.int64)],
                         f"{p}/self_attn/{name}_norm/Reshape")
                r = rms(r, norm_w(getattr(attn, f"{name}_norm"), f"{t}.self_attn.{name}_norm.weight"),
                        f"{p}/self_attn/{name}_norm")
                r = g.op("Reshape", [r, g.const([0, 0, heads * head_dim], np.int64)],
                         f"{p}/self_attn/{name}_norm/Reshape_back")
                q, k = (r, k) if name == "q" else (q, r)
        rotary = local_rotary if (local_rotary is not None and getattr(attn, "is_sliding", False)) \
            else global_rotary
        cos, sin = rope(rotary)
        window = (getattr(cfg, "sliding_window", None) if fam.window_from_config
                  else getattr(attn, "sliding_window", None))
        softcap = getattr(attn, "attn_logit_softcapping", None)
        past_k, past_v = f"past_key_values.{i}.key", f"past_key_values.{i}.value"
        pres_k, pres_v = f"present.{i}.key", f"present.{i}.value"
        inputs_kv += [past_k, past_v]
        outputs_kv += [pres_k, pres_v]
        rope_inputs = []
        if rope_table:
            rope_inputs = [cos, sin, "position_ids"]
        else:
            q = g.op("RotaryEmbedding", [q, gqa_pos, cos, sin], f"{p}/self_attn/q_rotary", domain=MS,
                     interleaved=0, num_heads=n_heads)
            k = g.op("RotaryEmbedding", [k, gqa_pos, cos, sin], f"{p}/self_attn/k_rotary", domain=MS,
                     interleaved=0, num_heads=n_kv)
        attrs = dict(num_heads=n_heads, kv_num_heads=n_kv, scale=float(attn.scaling),
                     do_rotary=1 if rope_table else 0, rotary_interleaved=0,
                     local_window_size=int(window) if window else -1)
        if softcap:
            attrs["softcap"] = float(softcap)
        gqa_out = g.op("GroupQueryAttention", [q, k, v, past_k, past_v, seqlens_k, total, *rope_inputs],
                       f"{p}/self_attn/GroupQueryAttention", domain=MS,
                       outputs=[f"{p}/self_attn/GroupQueryAttention/output_0", pres_k, pres_v], **attrs)
        o = linear(gqa_out, attn.o_proj, f"{p}/self_attn/o_proj", f"{t}.self_attn.o_proj")
        if fam.sandwich:
            o = rms(o, norm_w(layer.post_attention_layernorm, f"{t}.post_attention_layernorm.weight"),
                    f"{p}/post_attention_layernorm")
        x = add_norm(o, norm_w(ffn.pre_norm, f"{t}.{_attr_name(layer, ffn.pre_norm)}.weight"),
                     f"{p}/pre_ffn_norm")
        gate = linear(x, ffn.gate, f"{p}/mlp/gate_proj", f"{t}.mlp.gate_proj")
        up = linear(x, ffn.up, f"{p}/mlp/up_proj", f"{t}.mlp.up_proj")
        if act in ("silu", "swish"):
            a = g.op("Mul", [gate, g.op("Sigmoid", [gate], f"{p}/mlp/act/Sigmoid")], f"{p}/mlp/act/Mul")
        else:
            a = g.op("Gelu", [gate], f"{p}/mlp/act/Gelu",
                     approximate="none" if act == "gelu" else "tanh")
        y = linear(g.op("Mul", [a, up], f"{p}/mlp/Mul"), ffn.down, f"{p}/mlp/down_proj",
                   f"{t}.mlp.down_proj")
        if ffn.post_norm is not None:
            y = rms(y, norm_w(ffn.post_norm, f"{t}.{_attr_name(layer, ffn.post_norm)}.weight"),
                    f"{p}/post_ffn_norm")
        pending = y

    x = add_norm(pending, norm_w(base.norm, "model.norm.weight"), "/model/norm")
    head = model.get_output_embeddings()
    if head.weight.data_ptr() == emb_w.data_ptr():          # tied: read the embedding again
        w = g.op("Transpose", [emb_name], "/lm_head/Transpose", perm=[1, 0])
    else:
        w = g.init("lm_head.weight.T", _np(head.weight).T)
    logits = g.op("MatMul", [x, w], "/lm_head/MatMul")
    final_cap = getattr(cfg, "final_logit_softcapping", None)
    if final_cap:
        c = g.const(float(final_cap), f32)
        logits = g.op("Mul", [g.op("Tanh", [g.op("Div", [logits, c], "/lm_head/softcap/Div")],
                                   "/lm_head/softcap/Tanh"), c], "/lm_head/softcap/Mul")
    g.op("Identity", [logits], "/logits/Identity", outputs=["logits"])

    F = TensorProto.FLOAT
    kv_shape = ["batch_size", n_kv, "past_sequence_length", head_dim]
    kv_out_shape = ["batch_size", n_kv, "total_sequence_length", head_dim]
    graph_inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64,
                                      ["batch_size", "total_sequence_length"]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
        *[helper.make_tensor_value_info(n, F, kv_shape) for n in inputs_kv]]
    graph_outputs = [
        helper.make_tensor_value_info("logits", F, ["batch_size", "sequence_length", vocab]),
        *[helper.make_tensor_value_info(n, F, kv_out_shape) for n in outputs_kv]]
    graph = helper.make_graph(g.nodes, f"babel-edge {model_type}", graph_inputs, graph_outputs,
                              initializer=g.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    helper.make_opsetid(MS, 1)],
                              producer_name="babel-edge")
    proto.ir_version = 10
    return proto


def _attr_name(parent, module) -> str:
    """The attribute name under which `parent` holds `module`."""
    for name, child in parent.named_children():
        if child is module:
            return name
    raise ValueError("module is not a child of its layer")

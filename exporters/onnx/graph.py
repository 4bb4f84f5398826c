"""Bring a decoder graph (build.py) to a precision, and the graph facts the rest needs.

Everything here is surgery on ONNX protos and knows nothing about babel-edge's files.

  ├─ fp32: as built (a tied LM head reads the embedding through a Transpose: stored once)
  ├─ fp16: every float tensor to float16 (KV cache in fp16 too)
  ├─ int8: weight-only 8-bit blocks (MatMulNBits; llama.cpp's Q8_0 scheme)
  └─ int4: weight-only 4-bit blocks of 16, V and FFN-down projections at 8 bits (like Q4_K_M)
  int8/int4: embedding and LM head in 8-bit blocks, stored once when tied.
Why not onnxruntime's `quantize_dynamic` for int8: it quantizes activations per tensor
to uint8 at run time, and Gemma's outlier channels (its "massive activations") then
swamp every other channel — measured on Gemma 3 270M: argmax agreement with fp32 24%,
perplexity ×11.8 (a one-off check while designing this exporter, no committed script).
Weight-only 8-bit blocks (as exported here): 96.5% and ×1.000 (`bench/bench_export_onnx.py
--precisions fp32,int8`: the export's own parity report).
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

ONNX_FILE = "model.onnx"
DATA_FILE = "model.onnx_data"     # the name optimum itself writes and loads
# 4-bit blocks of 16 (scale + zero point each): on Gemma 3 270M pruned to 0.5 for en/de/fr,
# argmax agreement with fp32 74.5% and perplexity ×1.029 vs 71.3% and ×1.076 with blocks of 32,
# for +7 MB (246 vs 239 MB; the 8-bit embedding is 178 MB of it) at the same decode speed
# (bench/bench_export_onnx.py --precisions int4 --variants pruned, INT4_BLOCK set to each).
INT4_BLOCK = 16
Q8_BLOCK = 32                     # llama.cpp's Q8_0
# MatMulNBits compute: 4 = activations quantized to int8 per block inside the kernel. On these
# x86 CPUs the 8-bit kernel without it falls back to a path 8× slower than fp32 (Gemma 3
# 270M decode: 0.5 vs 4.5 tok/s); the accuracy cost is small (argmax 98.4% → 96.7% vs fp32)
# (bench/bench_export_onnx.py --precisions int8, ACCURACY_LEVEL set to 0 and to 4).
ACCURACY_LEVEL = 4


@contextlib.contextmanager
def _quiet():
    """onnxruntime's quantizers log every node through the root logger; none of it is actionable."""
    loggers = [logging.getLogger(n) for n in ("onnxruntime", "onnx")]
    loggers.append(logging.getLogger())
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def writes_kv_in_place(path: Path) -> bool:
    """Whether the graph at `path` appends to its KV cache with GroupQueryAttention (which can
    write into a buffer bound as both past and present) rather than concatenating past and
    new positions. Reads the graph only, not its external weights."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return any(n.op_type == "GroupQueryAttention" for n in proto.graph.node)


def load(path: Path):
    import onnx

    return onnx.load(str(path), load_external_data=True)


def save(proto, path: Path) -> list[str]:
    """Write `proto` as model.onnx + one external data file; returns the data file names."""
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(DATA_FILE)):
        stale.unlink(missing_ok=True)
    onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=DATA_FILE, size_threshold=1024, convert_attribute=False)
    return [DATA_FILE] if path.with_name(DATA_FILE).exists() else []


def opset_of(proto) -> int:
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def to_fp16(proto):
    """Every float tensor (weights, activations, KV cache, logits) to float16.

    onnxruntime's converter keeps a few numerically touchy ops in fp32 on its own
    (its default block list) and inserts the casts.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(proto, keep_io_types=False)


def _nbits_quantizer():
    """onnxruntime's MatMulNBitsQuantizer, imported without its side effect: the module calls
    logging.basicConfig(level=INFO) on import, which would print every library's INFO
    lines for the rest of the process."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    from onnxruntime.quantization import matmul_nbits_quantizer as mnq

    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)
    logging.getLogger(mnq.__name__).setLevel(logging.ERROR)
    return mnq


def _find_lm_head(proto, vocab: int, hidden: int):
    """The MatMul that maps the final hidden state to the vocabulary (B is [hidden, vocab])."""
    from onnx import numpy_helper  # noqa: F401 - keeps onnx imported for callers

    inits = {t.name: t for t in proto.graph.initializer}
    producers = {o: n for n in proto.graph.node for o in n.output}
    for node in proto.graph.node:
        if node.op_type != "MatMul":
            continue
        b = node.input[1]
        if b in inits and list(inits[b].dims) == [hidden, vocab]:
            return node, "initializer"
        p = producers.get(b)
        if p is not None and p.op_type == "Transpose" and p.input[0] in inits \
                and list(inits[p.input[0]].dims) == [vocab, hidden]:
            return node, "transpose"
    return None, None


def q8_blocks(w: np.ndarray, block: int = Q8_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Rows of w [N, K] as symmetric 8-bit blocks along K (llama.cpp's Q8_0 scheme), in the
    layout of onnxruntime's MatMulNBits (bits=8, no zero points → implicit 128):
    data uint8 [N, K/block, block] = q + 128, scales float32 [N * K/block]; w ≈ (data-128)*scale."""
    n, k = w.shape
    blocks = w.astype(np.float32).reshape(n, k // block, block)
    amax = np.abs(blocks).max(axis=2, keepdims=True)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(blocks / scale), -127, 127).astype(np.int16) + 128
    return q.astype(np.uint8), scale.reshape(-1)


def quantize_embedding_q8(proto, accuracy_level: int | None = ACCURACY_LEVEL) -> dict | None:
    """Embedding Gather and LM head in 8-bit blocks, stored once when they are tied.

    Gather(E, ids) becomes Gather of the 8-bit rows and of their scales, dequantized
    after the lookup (only T rows are touched per step); the LM head MatMul becomes
    MatMulNBits over the same initializers. onnxruntime's quantizer cannot do this:
    its Gather path is 4-bit only and it would store the tied head a second time.
    Returns what was done, or None when the hidden size is no multiple of the block.
    """
    from onnx import TensorProto, helper, numpy_helper

    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    gathers = [n for n in g.node if n.op_type == "Gather" and n.input[0] in inits
               and len(inits[n.input[0]].dims) == 2]
    if not gathers:
        return None
    gather = max(gathers, key=lambda n: inits[n.input[0]].dims[0])   # the token embedding
    emb_t = inits[gather.input[0]]
    vocab, hidden = emb_t.dims
    if hidden % Q8_BLOCK:
        return None
    head, head_kind = _find_lm_head(proto, vocab, hidden)
    tied = head_kind == "transpose" and \
        next(n for n in g.node if n.output[0] == head.input[1]).input[0] == emb_t.name
    nb = hidden // Q8_BLOCK

    def add_q8(name: str, rows: np.ndarray) -> tuple[str, str]:
        data, scales = q8_blocks(rows)
        g.initializer.extend([numpy_helper.from_array(data, f"{name}.q8"),
                              numpy_helper.from_array(scales, f"{name}.q8_scales")])
        return f"{name}.q8", f"{name}.q8_scales"

    emb = numpy_helper.to_array(emb_t)
    e_data, e_scales = add_q8(emb_t.name, emb)
    p = f"{emb_t.name}.q8/"
    ids, out = gather.input[1], gather.output[0]
    const = lambda n, v: helper.make_node("Constant", [], [p + n], name=p + n,   # noqa: E731
                                          value=numpy_helper.from_array(np.asarray(v), p + n + "_v"))
    new_nodes = [
        const("scale_shape", np.array([vocab, nb, 1], np.int64)),
        helper.make_node("Reshape", [e_scales, p + "scale_shape"], [p + "scales3"], name=p + "r0"),
        helper.make_node("Gather", [e_data, ids], [p + "rows"], name=p + "g0", axis=0),
        helper.make_node("Gather", [p + "scales3", ids], [p + "row_scales"], name=p + "g1", axis=0),
        helper.make_node("Cast", [p + "rows"], [p + "rows_f"], name=p + "c0", to=TensorProto.FLOAT),
        const("zero", np.array(128.0, np.float32)),
        helper.make_node("Sub", [p + "rows_f", p + "zero"], [p + "centred"], name=p + "s0"),
        helper.make_node("Mul", [p + "centred", p + "row_scales"], [p + "deq"], name=p + "m0"),
        helper.make_node("Shape", [ids], [p + "ids_shape"], name=p + "sh"),
        const("hidden", np.array([hidden], np.int64)),
        helper.make_node("Concat", [p + "ids_shape", p + "hidden"], [p + "out_shape"], name=p + "cc", axis=0),
        helper.make_node("Reshape", [p + "deq", p + "out_shape"], [out], name=p + "r1"),
    ]
    at = list(g.node).index(gather)
    g.node.remove(gather)
    for i, n in enumerate(new_nodes):
        g.node.insert(at + i, n)

    done = {"embedding": emb_t.name, "embedding_bits": 8, "block_size": Q8_BLOCK, "tied_head": tied}
    if head is not None:
        if tied:
            h_data, h_scales = e_data, e_scales
        else:
            h_data, h_scales = add_q8(head.input[1], numpy_helper.to_array(inits[head.input[1]]).T)
        attrs = dict(K=hidden, N=vocab, bits=8, block_size=Q8_BLOCK)
        if accuracy_level is not None:
            attrs["accuracy_level"] = accuracy_level
        mm = helper.make_node("MatMulNBits", [head.input[0], h_data, h_scales], list(head.output),
                              name=head.name + "_Q8", domain="com.microsoft", **attrs)
        old_b = head.input[1]
        at = list(g.node).index(head)
        g.node.remove(head)
        g.node.insert(at, mm)
        done["lm_head_bits"] = 8
        _drop_unused(proto, [old_b])
    _drop_unused(proto, [emb_t.name])
    if not any(o.domain == "com.microsoft" for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return done


def _drop_unused(proto, names) -> None:
    """Remove initializers/producer nodes of `names` nobody reads any more."""
    g = proto.graph
    for name in names:
        if any(name in n.input for n in g.node) or any(o.name == name for o in g.output):
            continue
        for n in list(g.node):
            if name in n.output:
                g.node.remove(n)
                _drop_unused(proto, list(n.input))
        for t in list(g.initializer):
            if t.name == name:
                g.initializer.remove(t)


def quantize_weights(proto, bits: int, keep_8bit: Sequence[str] = (),
                     accuracy_level: int | None = ACCURACY_LEVEL, block_size: int = INT4_BLOCK) -> tuple[object, dict]:
    """Weight-only quantization with onnxruntime MatMulNBits (no calibration, no
    activation ranges baked in).

    bits=8: every weight MatMul in symmetric 8-bit blocks of 32 (llama.cpp's Q8_0).
    bits=4: asymmetric 4-bit blocks of `block_size` (16), except the MatMuls whose names contain one of
      `keep_8bit` (e.g. v_proj, down_proj), which stay 8-bit — llama.cpp's Q4_K_M makes the
      same choice for attn_v/ffn_down, and on Gemma 3 270M it lifts argmax agreement with
      fp32 from 62% to 78%.
    The embedding and LM head are 8-bit in both cases (quantize_embedding_q8).
    """
    mnq = _nbits_quantizer()
    emb = quantize_embedding_q8(proto, accuracy_level)
    four = eight = 0
    with _quiet():
        if bits == 4:
            excl = [n.name for n in proto.graph.node if n.op_type == "MatMul"
                    and any(f"/{k}/" in n.name for k in keep_8bit)]
            q = mnq.MatMulNBitsQuantizer(proto, bits=4, block_size=block_size, is_symmetric=False,
                                         accuracy_level=accuracy_level, nodes_to_exclude=excl)
            q.process()
            proto = q.model.model
            four = _count_nbits(proto, 4)
        q = mnq.MatMulNBitsQuantizer(proto, bits=8, block_size=Q8_BLOCK, is_symmetric=True,
                                     accuracy_level=accuracy_level)
        q.process()
        proto = q.model.model
    eight = _count_nbits(proto, 8)
    details = {"method": "onnxruntime MatMulNBits (weight-only; activations stay float between "
                         "ops, int8 inside the kernel at accuracy_level 4)",
               "layers_4bit": four, "layers_8bit": eight,
               "int4": {"block_size": block_size, "symmetric": False} if bits == 4 else None,
               "int8": {"block_size": Q8_BLOCK, "symmetric": True},
               "kept_8bit": list(keep_8bit) if bits == 4 else None,
               "accuracy_level": accuracy_level, "embedding": emb}
    return proto, {k: v for k, v in details.items() if v is not None}


def _count_nbits(proto, bits: int) -> int:
    return sum(1 for n in proto.graph.node if n.op_type == "MatMulNBits"
               and any(a.name == "bits" and a.i == bits for a in n.attribute))


def op_counts(proto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in proto.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items()))


def weight_bytes_per_token(path: Path) -> int:
    """Bytes of weights one decoded token reads in the graph at `path`: every initializer
    except tables that are only looked up row by row (Gather, possibly through a Reshape: an
    untied embedding and its 8-bit scales). A tied embedding is also the LM head and counts
    once. Reads the graph, not its weights."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    consumers: dict[str, list] = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def looked_up(name: str) -> bool:
        users = consumers.get(name, [])
        return bool(users) and all(
            (u.op_type == "Gather" and u.input[0] == name)
            or (u.op_type == "Reshape" and u.input[0] == name and looked_up(u.output[0]))
            for u in users)

    total = 0
    for t in proto.graph.initializer:
        if looked_up(t.name):
            continue
        ext = {e.key: e.value for e in t.external_data}
        total += int(ext["length"]) if "length" in ext else len(t.raw_data) or \
            int(np.prod(t.dims)) * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
    return total


def io_dims(proto) -> dict:
    """{"kv_heads", "head_dim", "vocab"} read from the graph's KV-cache inputs and logits."""
    dims = lambda vi: [d.dim_value or d.dim_param for d in vi.type.tensor_type.shape.dim]  # noqa: E731
    kv = next(i for i in proto.graph.input if i.name.startswith("past_key_values."))
    logits = next(o for o in proto.graph.output if o.name == "logits")
    return {"kv_heads": dims(kv)[1], "head_dim": dims(kv)[3], "vocab": dims(logits)[2]}


def io_names(proto) -> tuple[list[str], list[str]]:
    inits = {t.name for t in proto.graph.initializer}
    return ([i.name for i in proto.graph.input if i.name not in inits],
            [o.name for o in proto.graph.output])

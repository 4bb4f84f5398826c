"""Export a (pruned) causal LM to ONNX with KV cache, parity-checked, and run it.

    export_onnx(model, out_dir, precision)     # → summary dict (also export_summary.json)
    OnnxCausalLM(out_dir).logits(ids)          # prefill + one-token steps, like generation

The exported directory is what optimum's `ORTModelForCausalLM.from_pretrained`
loads (config.json, generation_config.json, tokenizer files, model.onnx +
model.onnx_data) and what a plain onnxruntime session runs:
    inputs   input_ids [B,T] int64, attention_mask [B,P+T] int64, position_ids [B,T] int64,
             past_key_values.{i}.key/value [B, kv_heads, P, head_dim]
    outputs  logits [B,T,V], present.{i}.key/value [B, kv_heads, P+T, head_dim]
For Gemma 2, optimum-onnx 0.1.0's loader guesses the cache shape wrong; `load_ort_model`
loads any export with the shape read from the graph.
Every layer keeps its whole KV history (sliding-window layers are masked, not
truncated), so all layers' caches grow alike and the runner needs no per-family code.

The graph is traced from the model in memory (see onnx_graph.py), so per-layer FFN
widths are stored as they are — nothing padded. The export is written to a
temporary sibling directory, compared with the PyTorch model (exporters/parity.py),
and renamed into place only when parity passes.
"""
from __future__ import annotations

import functools
import gc
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import UserError
from ..progress import console, count_progress, status
from . import onnx_graph as G
from .parity import PARITY_PROMPTS, ParityReport, check_parity, torch_logits_fn

PRECISIONS = ("fp32", "fp16", "int8", "int4")
SUMMARY_FILE = "export_summary.json"
# Files of the source model directory worth carrying next to the export.
_CARRY = ("pruning_plan.json", "babel_edge_source.json", "GEMMA_TERMS.html", "NOTICE*", "LICENSE*",
          "chat_template.jinja")
PARAGRAPH_LANGS = ("en", "de", "fr", "ru", "zh")
PARAGRAPH_TOKENS = 128       # eval paragraphs are cut to this many tokens for parity
DECODE_STEPS = 8             # parity runs the last tokens one at a time through the KV cache


# ----------------------------------------------------------------------------- runner

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


# ----------------------------------------------------------------------------- parity texts

def _target_langs(model_dir: Path | None) -> list[str]:
    """The pruning plan's languages first (when there is one), then a spread of scripts."""
    langs: list[str] = []
    plan = model_dir / "pruning_plan.json" if model_dir else None
    if plan and plan.exists():
        try:
            data = json.loads(plan.read_text())
            for key in ("target_langs", "languages", "langs"):
                if isinstance(data.get(key), list):
                    langs = [str(x) for x in data[key]]
                    break
        except (OSError, ValueError, AttributeError):
            pass
    return list(dict.fromkeys(langs + list(PARAGRAPH_LANGS)))


def eval_paragraphs(model_dir: Path | None, n: int = 4) -> list[str]:
    """A few held-out paragraphs from the built-in corpus; [] while the corpus is unavailable."""
    return list(_paragraphs(tuple(_target_langs(model_dir)), n))


@functools.lru_cache(maxsize=8)
def _paragraphs(langs: tuple[str, ...], n: int) -> tuple[str, ...]:
    # cached: reading the corpus takes seconds, and tests export many models in one process
    try:
        from ..corpus import load_corpus

        corpus = load_corpus()
    except Exception:  # noqa: BLE001 - parity still runs on the prompts
        return ()
    out = []
    for lang in langs:
        try:
            texts = list(corpus.texts(lang, "eval"))
        except Exception:  # noqa: BLE001 - a language the corpus lacks is simply skipped
            continue
        if texts:
            out.append(max(texts[:20], key=len))    # a long one among the first few
        if len(out) >= n:
            break
    return tuple(out)


def parity_ids(tokenizer, model_dir: Path | None = None) -> tuple[list[list[int]], list[list[int]]]:
    """(prompt ids, paragraph ids) for parity; paragraphs cut to PARAGRAPH_TOKENS."""
    enc = lambda t: list(tokenizer(t, add_special_tokens=True)["input_ids"])  # noqa: E731
    prompts = [enc(p) for p in PARITY_PROMPTS]
    paragraphs = [enc(p)[:PARAGRAPH_TOKENS] for p in eval_paragraphs(model_dir)]
    return prompts, [p for p in paragraphs if len(p) > 1]


# ----------------------------------------------------------------------------- export

def _keep_8bit(model) -> tuple[str, ...]:
    """Sub-modules whose weights int4 keeps at 8 bits: attention V and the FFN down projection."""
    from ..models.adapters import model_adapter

    return ("v_proj", model_adapter(model).down)


def _resolve(model_dir_or_loaded):
    from ..models.loader import LoadedModel, load_model

    if isinstance(model_dir_or_loaded, LoadedModel):
        return model_dir_or_loaded
    return load_model(str(model_dir_or_loaded))


def _check_out(out: Path, force: bool) -> None:
    if not out.exists():
        return
    if not force:
        raise UserError(f"'{out}' already exists; pass --force to replace it")
    if out.is_dir() and any(out.iterdir()) and not (
            (out / SUMMARY_FILE).exists() or (out / G.ONNX_FILE).exists()):
        raise UserError(f"'{out}' is a non-empty directory that is not an ONNX export; "
                        f"refusing to replace it even with --force")


def _install(tmp: Path, out: Path) -> None:
    """Move the finished export into place; an old export there (with force) goes last."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def _carry_files(src: Path | None, dst: Path) -> list[str]:
    if src is None or not src.is_dir():
        return []
    done = []
    for pattern in _CARRY:
        for f in src.glob(pattern):
            if f.is_file():
                shutil.copy2(f, dst / f.name)
                done.append(f.name)
    return done


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _ffn_summary(model, model_dir: Path | None) -> dict:
    """Per-layer FFN widths now and, when known, before pruning (the pruning plan's
    `layers[i].width_before`; a model whose config lists no `ffn_widths` and whose layers all
    have `intermediate_size` is dense). A model sliced in memory has no record of its
    original widths: then `ffn_widths_before` and `ffn_kept` are None."""
    from ..models.adapters import ffn_layers

    views = ffn_layers(model)
    widths = [v.width for v in views]
    before = None
    plan = model_dir / "pruning_plan.json" if model_dir else None
    if plan is not None and plan.exists():
        try:
            layers = json.loads(plan.read_text()).get("layers") or []
            got = [int(x["width_before"]) for x in layers]
            before = got if len(got) == len(widths) else None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            before = None
    if before is None and getattr(model.config, "ffn_widths", None) is None \
            and all(w == getattr(model.config, "intermediate_size", None) for w in widths):
        before = widths
    per_neuron = [v.gate.in_features * 3 for v in views]   # gate row + up row + down column
    return {"ffn_widths": widths, "ffn_width_max": max(widths), "ffn_widths_before": before,
            "ffn_parameters": int(sum(w * p for w, p in zip(widths, per_neuron))),
            "ffn_kept": round(sum(widths) / sum(before), 4) if before else None}


def _run_parity(model, out_dir: Path, prompts, paragraphs, precision: str) -> ParityReport:
    """Reference logits first, then the export's: alternating PyTorch and onnxruntime calls
    makes their thread pools fight over the cores (measured: 5-10× slower on 2 busy cores)."""
    seqs = [list(s) for s in list(prompts) + list(paragraphs)]
    ref_fn = torch_logits_fn(model)
    with count_progress("parity: reference logits (PyTorch)", len(seqs), "sequences") as advance:
        ref = {}
        for s in seqs:
            ref[tuple(s)] = ref_fn(s)
            advance(1)
    runner = OnnxCausalLM(out_dir, spinning=False)
    exp = onnx_logits_fn(runner)
    with count_progress(f"parity {precision}: onnxruntime", len(seqs), "sequences") as advance:
        def exp_counted(ids):
            r = exp(ids)
            advance(1)
            return r
        return check_parity(lambda ids: ref[tuple(ids)], exp_counted, prompts, paragraphs, precision)


def export_onnx(model_dir_or_loaded, out_dir: str | Path, precision: str = "fp32",
                force: bool = False, *, opset: int | None = None, verbose: bool = True) -> dict:
    """Export a model (directory/spec, or a LoadedModel held in memory) to an ONNX directory.

    precision: fp32 | fp16 (for GPUs; KV cache in fp16 too) | int8 | int4 — the last two are
    weight-only blocks of 32 (onnxruntime MatMulNBits; see onnx_graph.quantize_weights).
    The model is traced as it is in memory (whatever width each FFN layer has); note that
    optimum's tracer sets `use_cache` on the model's config while it runs.
    Raises UserError on bad input, ParityError when the export misses its precision's
    thresholds (nothing is left at `out_dir` then). Returns the summary also written to
    `out_dir/export_summary.json`; with `verbose` the summary is printed to stderr.
    """
    if precision not in PRECISIONS:
        raise UserError(f"unknown ONNX precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    out = Path(out_dir).expanduser()
    _check_out(out, force)
    lm = _resolve(model_dir_or_loaded)
    model, tokenizer = lm.model, lm.tokenizer
    import torch

    if next(model.parameters()).dtype != torch.float32:
        raise UserError("ONNX export starts from a float32 model; load it without a dtype override")
    model.eval()
    ffn = _ffn_summary(model, lm.path)   # also refuses unsupported architectures, before any work

    t0 = time.time()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as e:
        raise UserError(f"cannot write next to '{out}': {e.strerror}") from e
    try:
        raw = tmp / "_trace"
        with status(f"tracing {lm.path.name} to ONNX (fp32, KV cache)"):
            raw_file = G.trace_fp32(model, raw, opset)
        gc.collect()    # the tracer's graph copies are large (several GB on a 270M model)
        t_trace = time.time() - t0
        final = tmp / G.ONNX_FILE
        details: dict = {}
        if precision in ("fp32", "fp16"):
            with status(f"writing {precision} graph with external data"):
                proto = G.load(raw_file)
                details["untied"] = G.untie_lm_head(proto)
                if precision == "fp16":
                    proto = G.to_fp16(proto)
                G.save(proto, final)
        else:
            bits = 8 if precision == "int8" else 4
            with status(f"quantizing weights to {bits} bits (onnxruntime MatMulNBits)"):
                proto, details["quantization"] = G.quantize_weights(
                    G.load(raw_file), bits, keep_8bit=_keep_8bit(model) if bits == 4 else ())
                G.save(proto, final)
        shutil.rmtree(raw)
        opset_used, (inputs, outputs), ops = G.opset_of(proto), G.io_names(proto), G.op_counts(proto)
        del proto
        gc.collect()

        # What optimum's ORTModelForCausalLM and a tokenizer need next to the graph.
        model.config.save_pretrained(tmp)
        gen = getattr(model, "generation_config", None)
        if gen is not None:
            try:
                gen.save_pretrained(tmp)
            except Exception:  # noqa: BLE001 - an invalid generation config is not fatal
                pass
        tokenizer.save_pretrained(tmp)
        carried = _carry_files(lm.path, tmp)

        prompts, paragraphs = parity_ids(tokenizer, lm.path)
        t1 = time.time()
        report = _run_parity(model, tmp, prompts, paragraphs, precision)  # raises ParityError
        t_parity = time.time() - t1

        files = {f.name: f.stat().st_size for f in sorted(tmp.iterdir()) if f.is_file()}
        summary = {
            "format": "onnx",
            "precision": precision,
            "path": str(out),
            "source": str(lm.path),
            "architecture": lm.arch,
            "family": lm.family,
            "onnx_file": G.ONNX_FILE,
            "external_data": [f for f in files if f == G.DATA_FILE],
            "model_bytes": files.get(G.ONNX_FILE, 0) + files.get(G.DATA_FILE, 0),
            "file_bytes": files.get(G.ONNX_FILE, 0) + files.get(G.DATA_FILE, 0),  # gguf.py's name
            "files": files,
            "opset": opset_used,
            "parameters": int(sum(p.numel() for p in model.parameters())),
            **ffn,
            "padded": None,   # nothing: each layer is stored at its own width (as in gguf.py)
            "kv_cache": {"layers": len([n for n in inputs if n.endswith(".key")]),
                         "inputs": "past_key_values.{i}.key/value", "outputs": "present.{i}.key/value"},
            "inputs": inputs,
            "outputs": outputs,
            "ops": ops,
            **{k: v for k, v in details.items() if v is not None},
            "parity": {**report.to_dict(), "prompts": len(prompts), "paragraphs": len(paragraphs),
                       "decode_steps": DECODE_STEPS},
            "carried_files": carried,
            "seconds": {"trace": round(t_trace, 1), "parity": round(t_parity, 1),
                        "total": round(time.time() - t0, 1)},
            "versions": _versions(),
        }
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        summary["files"][SUMMARY_FILE] = (tmp / SUMMARY_FILE).stat().st_size
        summary["summary_path"] = str(out / SUMMARY_FILE)
        _install(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if verbose and os.environ.get("BABEL_EDGE_QUIET") != "1":
        console.print(format_summary(summary))
    return summary


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def format_summary(s: dict) -> str:
    """The summary as a few human lines (the JSON file has everything)."""
    p = s["parity"]
    widths = s["ffn_widths"]
    same = len(set(widths)) == 1
    lines = [
        f"ONNX {s['precision']} export of {s['family']} → {s['path']}",
        f"  {s['onnx_file']} + {', '.join(s['external_data']) or 'no external data'}: "
        f"{_mb(s['model_bytes'])} (opset {s['opset']}), {s['parameters']:,} parameters",
        (f"  FFN width: {widths[0]} in every layer (dense)" if s["ffn_kept"] == 1 else
         f"  FFN widths: {widths[0] if same else widths}"
         + (f" ({s['ffn_kept']:.1%} of {sum(s['ffn_widths_before']):,} neurons kept)"
            if s["ffn_kept"] else "") + ", each layer stored at its own width, no padding"),
        f"  parity: max|Δlogit| {p['max_abs_diff']:.3g}, argmax {p['argmax_agreement']:.1%} over "
        f"{p['positions']} positions ({p['prompts']} prompts, {p['paragraphs']} paragraphs), "
        f"perplexity ×{p['ppl_ratio']:.4f} — {'pass' if p['passed'] else 'FAIL'}",
    ]
    q = s.get("quantization")
    if q:
        emb = q.get("embedding") or {}
        b4 = (q.get("int4") or {}).get("block_size")
        lines.insert(3, f"  weights: {q['layers_4bit']} matmuls at 4 bits"
                        f"{f' (blocks of {b4})' if b4 else ''}, {q['layers_8bit']} at 8 bits (blocks of 32); "
                        f"embedding {emb.get('embedding_bits', 32)}-bit"
                        f"{', shared with the tied LM head' if emb.get('tied_head') else ''}")
    elif s.get("untied"):
        lines.insert(3, f"  tied LM head stored once ({_mb(s['untied']['bytes_saved'])} saved)")
    return "\n".join(lines)

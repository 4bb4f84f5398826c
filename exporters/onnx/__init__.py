"""Export a (pruned) causal LM to ONNX with KV cache, parity-checked, and run it.

    export_onnx(model, out_dir, precision)     # → summary dict (also export_summary.json)
    OnnxCausalLM(out_dir).logits(ids)          # prefill + one-token steps, like generation

The exported directory is what three runtimes load as it is:
  - onnxruntime: model.onnx + model.onnx_data (OnnxCausalLM, the `onnxruntime` engine);
  - onnxruntime-genai: genai_config.json + the Hugging Face tokenizer files (og.Model,
    og.Generator; the `onnxruntime-genai` engine; see genai.py);
  - optimum's ORTModelForCausalLM: config.json, generation_config.json.
    inputs   input_ids [B,T] int64, attention_mask [B,P+T] int64, position_ids [B,T] int64,
             past_key_values.{i}.key/value [B, kv_heads, S, head_dim]
    outputs  logits [B,T,V], present.{i}.key/value [B, kv_heads, S', head_dim]
The graph is written from the weights (build.py): onnxruntime's fused decoder operators
and GroupQueryAttention, whose KV cache is either past + new positions (S = P, S' = P+T) or
one buffer bound as past and present and written in place (S = S' ≥ P+T), which is how
OnnxCausalLM and onnxruntime-genai decode. Per-layer FFN widths are stored as they are
(nothing padded); a trimmed vocabulary is just a smaller embedding and tokenizer.

The export is written to a temporary sibling directory, compared with the PyTorch model
(exporters/parity.py) through onnxruntime and through onnxruntime-genai (whose tokenizer
must also encode the parity texts exactly as transformers does), and renamed into place only
when both pass.
"""
from __future__ import annotations

import contextlib
import gc
import os
import shutil
import time
from pathlib import Path

from ... import precision as P
from ...errors import UserError
from ...io import atomic_dir, write_json
from ...progress import console, count_progress, status
from ...provenance import package_versions
from ..parity import (PARITY_PROMPTS, ParityError, ParityReport, check_parity, mb, parity_ids,
                      parity_texts, summary_line, torch_logits_fn)
from . import build as B
from . import genai as GA
from . import graph as G
from .runner import DECODE_STEPS, OnnxCausalLM, load_ort_model, onnx_logits_fn

__all__ = ["PRECISIONS", "SUMMARY_FILE", "OnnxCausalLM", "load_ort_model", "onnx_logits_fn",
           "export_onnx", "format_summary", "GENAI_CONFIG"]

GENAI_CONFIG = GA.GENAI_CONFIG

PRECISIONS = P.names("onnx")
SUMMARY_FILE = "export_summary.json"
# Files of the source model directory worth carrying next to the export.
_CARRY = ("pruning_plan.json", "babel_edge_source.json", "GEMMA_TERMS.html", "NOTICE*", "LICENSE*",
          "chat_template.jinja")


def _keep_8bit(model) -> tuple[str, ...]:
    """Sub-modules whose weights int4 keeps at 8 bits: attention V and the FFN down projection."""
    from ...models.adapters import model_adapter

    return ("v_proj", model_adapter(model).down)


def check_out(out: Path, force: bool) -> None:
    if not out.exists():
        return
    if not force:
        raise UserError(f"'{out}' already exists; pass --force to replace it")
    if out.is_dir() and any(out.iterdir()) and not (
            (out / SUMMARY_FILE).exists() or (out / G.ONNX_FILE).exists()):
        raise UserError(f"'{out}' is a non-empty directory that is not an ONNX export; "
                        f"refusing to replace it even with --force")


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


def _ffn_summary(model, plan) -> dict:
    """Per-layer FFN widths now and, when known, before pruning (the pruning plan's; a model
    whose config lists no `ffn_widths` and whose layers all have `intermediate_size` is
    dense). A model sliced in memory has no record of its original widths: then
    `ffn_widths_before` and `ffn_kept` are None."""
    from ...models.adapters import ffn_layers

    views = ffn_layers(model)
    widths = [v.width for v in views]
    before = plan.widths_before if plan is not None and len(plan.layers) == len(widths) else None
    if before is None and getattr(model.config, "ffn_widths", None) is None \
            and all(w == getattr(model.config, "intermediate_size", None) for w in widths):
        before = widths
    per_neuron = [v.gate.in_features * 3 for v in views]   # gate row + up row + down column
    return {"ffn_widths": widths, "ffn_width_max": max(widths), "ffn_widths_before": before,
            "ffn_parameters": int(sum(w * p for w, p in zip(widths, per_neuron))),
            "ffn_kept": round(sum(widths) / sum(before), 4) if before else None}


# ----------------------------------------------------------------------------- steps

def write_graph(model, out_dir: Path, precision: str, opset: int | None,
                structure_dir: Path | None = None) -> dict:
    """Write the graph from the weights (fp32), then bring it to `precision`; model.onnx(+_data)
    in out_dir. With `structure_dir`, the fp32 graph the precision is made from is saved there
    too (for the structure check: see run_parity). Returns what was done (quantization
    details, opset, io, ops, KV cache)."""
    with status("writing the ONNX graph (fp32, KV cache)"):
        proto = B.build_decoder(model, opset or B.OPSET)
    details: dict = {}
    final = out_dir / G.ONNX_FILE
    if structure_dir is not None:
        import onnx

        with status("writing the fp32 graph for the structure check"):
            fp32 = onnx.ModelProto()
            fp32.CopyFrom(proto)            # saving with external data empties the tensors
            G.save(fp32, structure_dir / G.ONNX_FILE)
            del fp32
    if precision in ("fp32", "fp16"):
        with status(f"writing {precision} graph with external data"):
            if precision == "fp16":
                proto = G.to_fp16(proto)
            G.save(proto, final)
    else:
        bits = 8 if precision == "int8" else 4
        with status(f"quantizing weights to {bits} bits (onnxruntime MatMulNBits)"):
            proto, details["quantization"] = G.quantize_weights(
                proto, bits, keep_8bit=_keep_8bit(model) if bits == 4 else ())
            G.save(proto, final)
    details["opset"], (details["inputs"], details["outputs"]) = G.opset_of(proto), G.io_names(proto)
    details["ops"] = G.op_counts(proto)
    details["io"] = G.io_dims(proto)
    del proto
    gc.collect()
    return details


def write_side_files(lm, out_dir: Path) -> list[str]:
    """What optimum's ORTModelForCausalLM and a tokenizer need next to the graph, plus the
    source's plan and licence files."""
    lm.model.config.save_pretrained(out_dir)
    gen = getattr(lm.model, "generation_config", None)
    if gen is not None:
        try:
            gen.save_pretrained(out_dir)
        except Exception:  # noqa: BLE001 - an invalid generation config is not fatal
            pass
    lm.tokenizer.save_pretrained(out_dir)
    return _carry_files(lm.path, out_dir)


@contextlib.contextmanager
def faithful_attention(model):
    """The model with eager attention while the block runs, when its attention caps logits
    (Gemma 2's attn_logit_softcapping): transformers' default sdpa path silently skips the
    cap, which the graph (like llama.cpp) applies. Restored afterwards."""
    before = getattr(model.config, "_attn_implementation", None)
    switch = bool(getattr(model.config, "attn_logit_softcapping", None)) and before not in (None, "eager")
    if switch:
        model.set_attn_implementation("eager")
    try:
        yield model
    finally:
        if switch:
            model.set_attn_implementation(before)


def run_parity(model, out_dir: Path, prompts, paragraphs, precision: str,
               structure_dir: Path | None = None) -> tuple[ParityReport, ParityReport, ParityReport | None]:
    """The export against PyTorch through onnxruntime and through onnxruntime-genai (same
    sequences, same gate). Reference logits first: alternating PyTorch and onnxruntime calls
    makes their thread pools fight over the cores (measured: 5-10× slower on 2 busy cores).

    With `structure_dir` (the fp32 graph a reduced precision was made from), that graph is
    first held to the fp32 gate: reduced precisions are judged by argmax agreement and
    perplexity, which a broken graph (a rotary embedding turning the wrong way) can pass on a
    model that barely uses positions; the fp32 gate (max |Δlogit|) catches it, and the
    precision's own gate then judges only what quantization changed. Returns the
    onnxruntime, onnxruntime-genai and structure reports (None without structure_dir)."""
    seqs = [list(s) for s in list(prompts) + list(paragraphs)]
    ref_fn = torch_logits_fn(model)
    with count_progress("parity: reference logits (PyTorch)", len(seqs), "sequences") as advance, \
            faithful_attention(model):
        ref = {}
        for s in seqs:
            ref[tuple(s)] = ref_fn(s)
            advance(1)
    def check(label: str, make, gate: str) -> ParityReport:
        exp = make()
        with count_progress(f"parity {gate}: {label}", len(seqs), "sequences") as advance:
            def exp_counted(ids):
                r = exp(ids)
                advance(1)
                return r
            try:
                return check_parity(lambda ids: ref[tuple(ids)], exp_counted, prompts,
                                    paragraphs, gate)
            except ParityError as e:
                raise ParityError(f"{label}: {e}") from e
            finally:
                del exp
                gc.collect()

    structure = None
    if structure_dir is not None:
        structure = check("graph structure (the fp32 graph before quantization)",
                          lambda: onnx_logits_fn(OnnxCausalLM(structure_dir, spinning=False)), "fp32")
        shutil.rmtree(structure_dir, ignore_errors=True)
    ort = check("onnxruntime", lambda: onnx_logits_fn(OnnxCausalLM(out_dir, spinning=False)), precision)
    genai = check("onnxruntime-genai", lambda: GA.genai_logits_fn(out_dir, DECODE_STEPS), precision)
    return ort, genai, structure


def check_genai_tokenizer(out_dir: Path, tokenizer, target_langs) -> int:
    """onnxruntime-genai must tokenize as transformers does (the parity prompts and texts);
    returns how many texts were compared."""
    texts = list(PARITY_PROMPTS) + parity_texts(target_langs)
    bad = GA.tokenizer_mismatches(out_dir, tokenizer, texts)
    if bad:
        raise ParityError(f"onnxruntime-genai tokenizes {len(bad)} of {len(texts)} texts differently "
                          f"from transformers (first: {bad[0][:40]!r})")
    return len(texts)


# ----------------------------------------------------------------------------- export

def export_onnx(model_dir_or_loaded, out_dir: str | Path, precision: str = "fp32",
                force: bool = False, *, opset: int | None = None, verbose: bool = True) -> dict:
    """Export a model (directory/spec, or a LoadedModel held in memory) to an ONNX directory.

    precision: an ONNX precision of babel_edge.precision (fp32 | fp16 | int8 | int4; see
    graph.quantize_weights). The graph is written from the model's weights as they are in
    memory (whatever width each FFN layer has; build.py); opset: the ai.onnx opset (default
    build.OPSET, at least 20). Raises UserError on bad input, ParityError when the export
    misses its precision's gate through onnxruntime or onnxruntime-genai, or genai's
    tokenizer disagrees with transformers' (nothing is left at `out_dir` then). Returns the
    summary also written to `out_dir/export_summary.json`; with `verbose` the summary is
    printed to stderr.
    """
    import torch

    from ...models import as_loaded
    from ...prune.plan import PruningPlan

    precision = P.get("onnx", precision).name
    out = Path(out_dir).expanduser()
    check_out(out, force)
    lm = as_loaded(model_dir_or_loaded)
    model = lm.model
    if next(model.parameters()).dtype != torch.float32:
        raise UserError("ONNX export starts from a float32 model; load it without a dtype override")
    model.eval()
    plan = PruningPlan.read(lm.path)
    ffn = _ffn_summary(model, plan)      # also refuses unsupported architectures, before any work
    t0 = time.time()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot write next to '{out}': {e.strerror}") from e
    with atomic_dir(out) as tmp:
        structure_dir = None if precision == "fp32" else tmp / ".fp32-structure-check"
        details = write_graph(model, tmp, precision, opset, structure_dir)
        t_graph = time.time() - t0
        carried = write_side_files(lm, tmp)
        in_place = "GroupQueryAttention" in details["ops"]
        genai = GA.write_genai_files(tmp, lm, {"inputs": details["inputs"], **details.pop("io")},
                                     shared_kv=in_place)
        targets = plan.target_langs if plan else ()
        prompts, paragraphs = parity_ids(lm.tokenizer, targets, lm.model.config)   # + one long sequence
        t1 = time.time()
        genai["tokenizer_texts_checked"] = check_genai_tokenizer(tmp, lm.tokenizer, targets)
        report, genai_report, structure = run_parity(model, tmp, prompts, paragraphs, precision,
                                                     structure_dir)                  # raises
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
            "file_bytes": files.get(G.ONNX_FILE, 0) + files.get(G.DATA_FILE, 0),  # gguf's name
            "files": files,
            "opset": details.pop("opset"),
            "parameters": int(sum(p.numel() for p in model.parameters())),
            **ffn,
            "padded": None,   # nothing: each layer is stored at its own width
            "kv_cache": {"layers": len([n for n in details["inputs"] if n.endswith(".key")]),
                         "inputs": "past_key_values.{i}.key/value",
                         "outputs": "present.{i}.key/value",
                         "in_place": in_place},
            "inputs": details.pop("inputs"),
            "outputs": details.pop("outputs"),
            "ops": details.pop("ops"),
            **{k: v for k, v in details.items() if v is not None},
            "parity": {**report.to_dict(), "prompts": len(prompts), "paragraphs": len(paragraphs),
                       "decode_steps": DECODE_STEPS,
                       "structure_fp32": structure.to_dict() if structure else None},
            "genai": {**genai, "parity": {**genai_report.to_dict(), "prompts": len(prompts),
                                          "paragraphs": len(paragraphs),
                                          "decode_steps": DECODE_STEPS}},
            "carried_files": carried,
            "seconds": {"graph": round(t_graph, 1), "parity": round(t_parity, 1),
                        "total": round(time.time() - t0, 1)},
            "versions": package_versions(("torch", "transformers", "onnx", "onnxruntime",
                                          "onnxruntime-genai")),
        }
        write_json(tmp / SUMMARY_FILE, summary)
        summary["files"][SUMMARY_FILE] = (tmp / SUMMARY_FILE).stat().st_size
        summary["summary_path"] = str(out / SUMMARY_FILE)
    if verbose and os.environ.get("BABEL_EDGE_QUIET") != "1":
        console.print(format_summary(summary))
    return summary


def format_summary(s: dict) -> str:
    """The summary as a few human lines (the JSON file has everything)."""
    p = s["parity"]
    widths = s["ffn_widths"]
    same = len(set(widths)) == 1
    lines = [
        f"ONNX {s['precision']} export of {s['family']} → {s['path']}",
        f"  {s['onnx_file']} + {', '.join(s['external_data']) or 'no external data'}: "
        f"{mb(s['model_bytes'])} (opset {s['opset']}), {s['parameters']:,} parameters",
        (f"  FFN width: {widths[0]} in every layer (dense)" if s["ffn_kept"] == 1 else
         f"  FFN widths: {widths[0] if same else widths}"
         + (f" ({s['ffn_kept']:.1%} of {sum(s['ffn_widths_before']):,} neurons kept)"
            if s["ffn_kept"] else "") + ", each layer stored at its own width, no padding"),
        summary_line(p),
    ]
    ga = s.get("genai")
    if ga:
        gp = ga["parity"]
        lines.append(f"  onnxruntime-genai: {ga['config']} ({ga['type']}, KV cache "
                     f"{'one buffer written in place' if ga['past_present_share_buffer'] else 'past + new'}"
                     f", {ga['max_length']} positions by default of {ga['context_length']}); tokenizer "
                     f"equal on {ga['tokenizer_texts_checked']} texts; parity max|Δlogit| "
                     f"{gp['max_abs_diff']:.3g}, argmax {gp['argmax_agreement']:.1%} — "
                     f"{'pass' if gp['passed'] else 'FAIL'}")
    q = s.get("quantization")
    if q:
        emb = q.get("embedding") or {}
        b4 = (q.get("int4") or {}).get("block_size")
        lines.insert(3, f"  weights: {q['layers_4bit']} matmuls at 4 bits"
                        f"{f' (blocks of {b4})' if b4 else ''}, {q['layers_8bit']} at 8 bits (blocks of 32); "
                        f"embedding {emb.get('embedding_bits', 32)}-bit"
                        f"{', shared with the tied LM head' if emb.get('tied_head') else ''}")
    return "\n".join(lines)

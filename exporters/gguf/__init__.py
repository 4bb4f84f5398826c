"""Export a (pruned) causal LM to one GGUF file that stock llama.cpp runs, parity-checked.

    export_gguf(model_dir | LoadedModel, "out.gguf", quant="q8_0")   # -> summary dict

Steps, each a function below or in its own module:
  1. choose the architecture and stored widths      layout.choose_layout (the target table;
     native when all layers share one width; deci.py / gemma4.py for per-layer widths;
     padded.py where no stock architecture exists)
  2. HF weights -> GGUF tensors, with the rewrites that make that architecture compute
     the model exactly                                tensors.gguf_tensors (+ the target's rewrite)
  3. tokenizer -> GGUF tokenizer metadata             vocab.vocab_from_tokenizer
  4. write F32 (or F16) with gguf-py (writer.py); other precisions through llama.cpp's
     own quantizer (llama.quantize)
  5. parity: llama.cpp tokenizes the parity texts exactly like the HF tokenizer, and its
     logits match PyTorch's within the precision's gate (exporters/parity.py); a miss
     raises ParityError and removes the file.
Everything is written under a temporary name in the output folder and renamed only
after parity passes; the summary goes next to it as `<name>.export_summary.json`.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ... import precision as P
from ...errors import UserError
from ...io import atomic_file, remove, write_json
from ...progress import console, count_progress, status
from ...provenance import package_versions
from ..parity import (DECODE_STEPS, PARAGRAPH_TOKENS, PARITY_PROMPTS, ParityError, compare,
                      long_length, mb, parity_ids, parity_texts, summary_line, torch_logits_fn)
from . import llama, vocab as gguf_vocab
from .layout import Layout, choose_layout
from .tensors import gguf_tensors
from .writer import rewrite_note, write_file

QUANTS = P.names("gguf")
SUMMARY_SUFFIX = ".export_summary.json"
SAMPLE_PROMPT = "The capital of France is"


def normalize_quant(quant: str | None) -> str:
    return P.get("gguf", quant).name


def summary_path(out: Path) -> Path:
    return out.with_name(out.stem + SUMMARY_SUFFIX)


def check_out(out: str | Path, force: bool) -> Path:
    out = Path(out).expanduser()
    if out.suffix.lower() != ".gguf":
        raise UserError(f"--out '{out}' should be a .gguf file path")
    if out.is_dir():
        raise UserError(f"--out '{out}' is a directory; give a .gguf file path")
    if out.exists() and not force:
        raise UserError(f"'{out}' already exists; pass --force to replace it")
    return out


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run torch with n intra-op threads (None: unchanged), restoring the setting after."""
    import torch

    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ----------------------------------------------------------------------------- steps

@dataclass
class Prepared:
    """Steps 1-3: what goes into the file."""
    layout: Layout
    tensors: dict
    info: dict            # the rewrites applied
    vocab: object         # vocab.Vocab


def prepare(lm, plan, align: int | None, threads: int | None) -> Prepared:
    """Layout, GGUF tensors (with the target's rewrites) and tokenizer metadata."""
    layout = choose_layout(lm.model, align)
    with status(f"preparing {layout.target.arch} tensors"):
        calib = None
        if layout.target.rewrite is not None and layout.target.per_layer_ffn:
            # gemma4's V rewrite looks at V's range on real text: the profile split
            calib = [lm.tokenizer(t)["input_ids"][:PARAGRAPH_TOKENS]
                     for t in parity_texts(plan.target_langs if plan else (), "profile")]
        with torch_threads(threads):
            tensors, info = gguf_tensors(lm.model, layout, calib)
        n_vocab = int(tensors["token_embd.weight"].shape[0])
        vocab = gguf_vocab.vocab_from_tokenizer(lm.tokenizer, n_vocab, lm.path)
        if len(vocab.tokens) != n_vocab:
            raise UserError(f"the tokenizer has {len(vocab.tokens)} tokens but the embedding "
                            f"{n_vocab} rows; the model directory is inconsistent")
    return Prepared(layout, tensors, info, vocab)


def write_quantized(path: Path, lm, prep: Prepared, plan, quant: str,
                    threads: int | None) -> dict:
    """Step 4: the file at `path` in `quant`; returns timings (and tensors kept F32 in F16)."""
    t0 = time.time()
    notes: dict = {}
    if quant in ("f32", "f16"):
        with status(f"writing {quant} GGUF ({prep.layout.target.arch})"):
            kept = write_file(path, lm, prep.layout, prep.tensors, prep.vocab, plan, prep.info, quant)
        if quant == "f16" and kept:
            notes["kept_f32_in_f16_file"] = kept
        return {"write": time.time() - t0, "quantize": 0.0, **notes}
    f32 = path.with_name(f"{path.name}.f32-{os.getpid()}")      # the quantizer's input
    try:
        with status(f"writing F32 GGUF ({prep.layout.target.arch})"):
            write_file(f32, lm, prep.layout, prep.tensors, prep.vocab, plan, prep.info, "f32")
        t_write = time.time() - t0
        keep = prep.layout.target.quant_overrides() if prep.layout.target.quant_overrides else None
        with status(f"quantizing to {quant} with llama.cpp"):
            llama.quantize(f32, path, P.get("gguf", quant).llama_ftype, keep=keep, threads=threads)
    finally:
        remove(f32)
    return {"write": t_write, "quantize": time.time() - t0 - t_write}


def run_parity(path: Path, lm, plan, quant: str, threads: int | None, n_params: int):
    """Step 5: (ParityReport, tokenizer check, prompts, paragraphs, greedy sample) of the file
    in llama.cpp against the PyTorch model. Small models run on one thread: ggml's spinning
    workers lose badly on a shared CPU."""
    run_threads = threads or (1 if n_params < 50_000_000 else None)
    langs = plan.target_langs if plan else ()
    prompts, paragraphs = parity_ids(lm.tokenizer, langs, lm.model.config)
    n_ctx = max(64, max(len(p) for p in prompts + paragraphs)) + 16
    with status("loading the GGUF in llama.cpp"):
        runner = llama.LlamaRunner(path, n_ctx=n_ctx, threads=run_threads)
    try:
        with torch_threads(run_threads):
            texts = list(PARITY_PROMPTS) + parity_texts(langs)
            enc = lambda t: list(lm.tokenizer(t, add_special_tokens=True)["input_ids"])  # noqa: E731
            mismatched = [t[:40] for t in texts
                          if runner.tokenize(t)[:PARAGRAPH_TOKENS] != enc(t)[:PARAGRAPH_TOKENS]]
            ref = torch_logits_fn(lm.model)
            with count_progress(f"parity {quant} (torch vs llama.cpp)",
                                len(prompts) + len(paragraphs), "sequences") as advance:
                def exported(ids):          # the cached token-by-token decode for the last tokens
                    r = runner.logits(ids, decode_steps=DECODE_STEPS)
                    advance(1)
                    return r
                report = compare(ref, exported, prompts, paragraphs, quant)
        sample = runner.generate(SAMPLE_PROMPT)
    finally:
        runner.close()
    tok_check = {"texts": len(texts), "identical": len(texts) - len(mismatched),
                 "mismatched": mismatched}
    return report, tok_check, len(prompts), len(paragraphs), sample


# ----------------------------------------------------------------------------- export

def export_gguf(model_dir_or_loaded, out: str | Path, quant: str = "q8_0", force: bool = False,
                *, align: int | None = None, threads: int | None = None,
                verbose: bool = True) -> dict:
    """Export a model (directory/spec, or a LoadedModel held in memory) to one GGUF file.

    quant: a GGUF precision of babel_edge.precision (q8_0, q4_k_m, ... through llama.cpp's
    quantizer). align: zero-pad every layer's FFN width up to a multiple of this (exact),
    e.g. 256 so that K-quants apply to ffn_down instead of falling back.
    Raises UserError on bad input and ParityError when llama.cpp does not reproduce the
    PyTorch model within the precision's gate (no file is left at `out` then).
    Returns the summary, also written to `<out stem>.export_summary.json`.
    """
    from ...models import as_loaded
    from ...prune.plan import PruningPlan

    quant = normalize_quant(quant)
    out = check_out(out, force)
    if align is not None and align < 1:
        raise UserError(f"--align must be a positive number of neurons, not {align}")
    lm = as_loaded(model_dir_or_loaded)
    model = lm.model
    if str(next(model.parameters()).dtype) != "torch.float32":
        raise UserError("GGUF export starts from a float32 model; load it without a dtype override")
    model.eval()
    t0 = time.time()
    plan = PruningPlan.read(lm.path)
    prep = prepare(lm, plan, align, threads)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as tmp:
        seconds = write_quantized(tmp, lm, prep, plan, quant, threads)
        kept_f32 = seconds.pop("kept_f32_in_f16_file", None)
        if kept_f32:
            prep.info["kept_f32_in_f16_file"] = kept_f32
        del prep.tensors
        types = llama.tensor_types(tmp)
        t2 = time.time()
        report, tok_check, n_prompts, n_paras, sample = run_parity(
            tmp, lm, plan, quant, threads, types["elements"])
        seconds["parity"] = time.time() - t2
        failures = list(report.failures)
        if tok_check["mismatched"]:
            failures.append(f"llama.cpp tokenizes {len(tok_check['mismatched'])} of "
                            f"{tok_check['texts']} parity texts differently from the HF tokenizer "
                            f"(e.g. {tok_check['mismatched'][0]!r})")
        if failures:
            raise ParityError(f"GGUF export failed parity ({quant}, {prep.layout.target.arch}): "
                              + "; ".join(failures) + f" [{report.summary()}]")
    seconds["total"] = time.time() - t0
    summary = _summary(out, lm, prep, plan, quant, types, report, tok_check, n_prompts, n_paras,
                       sample, seconds)
    sp = write_json(summary_path(out), summary)
    summary["summary_path"] = str(sp)
    if verbose and os.environ.get("BABEL_EDGE_QUIET") != "1":
        console.print(format_summary(summary))
    return summary


def _summary(out, lm, prep: Prepared, plan, quant, types, report, tok_check, n_prompts, n_paras,
             sample, seconds) -> dict:
    from ...models.adapters import adapter_for

    layout = prep.layout
    ffn_bytes = sum(b for k, b in types["bytes_by_tensor"].items()
                    if any(f".{x}." in k for x in ("ffn_gate", "ffn_up", "ffn_down")))
    return {
        "format": "gguf",
        "precision": quant,
        "path": str(out),
        "source": str(lm.path),
        "family": lm.family,
        "model_type": lm.arch,
        "architecture": layout.target.arch,
        "native_architecture": adapter_for(lm.arch).gguf_arch,
        "architecture_reason": layout.reason,
        "rewrite": None if layout.target.arch == adapter_for(lm.arch).gguf_arch
        else rewrite_note(layout, prep.info),
        "file_bytes": out.stat().st_size,
        "ffn_bytes": ffn_bytes,
        "parameters": int(sum(p.numel() for p in lm.model.parameters())),
        "gguf_elements": types["elements"],
        "ffn_widths": layout.widths,
        "ffn_width_max": max(layout.widths),
        "per_layer_widths": len(set(layout.widths)) > 1,
        "padded": layout.padding(lm.model.config.hidden_size),
        "notes": layout.notes,
        "rewrites": prep.info,
        "tensor_types": types["count"],
        "bytes_by_type": types["bytes"],
        "tensor_types_by_tensor": types["by_tensor"],
        "k_quant_fallbacks": _fallbacks(types, quant),
        "tokenizer": {**prep.vocab.summary(), "check": tok_check},
        "parity": {**report.to_dict(), "prompts": n_prompts, "paragraphs": n_paras,
                   "long_sequence_tokens": long_length(lm.model.config),
                   "decode_steps": DECODE_STEPS,
                   "engine": "llama.cpp (llama-cpp-python), default context settings"},
        "sample": {"prompt": SAMPLE_PROMPT, "greedy": sample},
        "pruning": None if plan is None else {
            "target_langs": plan.target_langs, "rate": plan.rate,
            "realized_rate": round(plan.realized_rate, 6), "strategy": plan.strategy,
            "schedule": plan.schedule},
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "versions": package_versions(("llama_cpp_python", "gguf", "torch", "transformers")),
    }


def _fallbacks(types: dict, quant: str) -> dict:
    """Tensors a K-quant could not take: llama.cpp needs rows (ne0) that are multiples of 256
    and otherwise falls back per tensor (Q4_K -> Q5_0, Q6_K -> Q8_0, F16 below 32)."""
    if "_k" not in quant:
        return {}
    out = {}
    for kind, by_type in types["by_tensor"].items():
        odd = {t: n for t, n in by_type.items() if t in ("Q4_0", "Q5_0", "Q5_1", "Q8_0", "F16")}
        if odd:
            out[kind] = {"types": odd, "row_lengths": types["row_lengths"].get(kind)}
    return out


def format_summary(s: dict) -> str:
    """A few human lines; the JSON file has everything."""
    p = s["parity"]
    widths = s["ffn_widths"]
    types = ", ".join(f"{t}×{n}" for t, n in s["tensor_types"].items())
    lines = [
        f"GGUF {s['precision']} export of {s['family']} → {s['path']}",
        f"  architecture '{s['architecture']}' ({s['architecture_reason']})",
        *([f"  rewrite: {s['rewrite']}"] if s.get("rewrite") else []),
        f"  {mb(s['file_bytes'])} ({mb(s['ffn_bytes'])} FFN), {s['parameters']:,} parameters; "
        f"tensors {types}",
        f"  FFN widths: {widths[0] if len(set(widths)) == 1 else widths}",
    ]
    if s["padded"]:
        lines.append(f"  PADDED: {s['padded']['zero_neurons']:,} zero neurons stored "
                     f"({s['padded']['extra_parameters']:,} parameters) — {'; '.join(s['notes'])}")
    elif s["notes"]:
        lines.append("  note: " + "; ".join(s["notes"]))
    if s["k_quant_fallbacks"]:
        fb = ", ".join(f"{k.replace('blk.*.', '').replace('.weight', '')} "
                       f"{'/'.join(f'{t}×{n}' for t, n in v['types'].items())}"
                       for k, v in s["k_quant_fallbacks"].items())
        lines.append(f"  K-quant fallbacks (row length not a multiple of 256): {fb}")
    lines.append(summary_line(p, f", tokenizer {s['tokenizer']['check']['identical']}/"
                                 f"{s['tokenizer']['check']['texts']} identical"))
    lines.append(f"  sample: {s['sample']['prompt']!r} → {s['sample']['greedy']!r}")
    lines.append(f"  summary: {s.get('summary_path', '')}")
    return "\n".join(lines)

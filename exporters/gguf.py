"""Export a (pruned) causal LM to one GGUF file that stock llama.cpp runs, parity-checked.

    export_gguf(model_dir | LoadedModel, "out.gguf", quant="q8_0")   # -> summary dict

Steps (each a function of another module):
  1. choose the architecture and stored widths      gguf_arch.choose_layout
     (native when all layers share one width; `deci` / `gemma4` for per-layer
     widths; zero-padding to the widest only where no stock architecture exists)
  2. HF weights -> GGUF tensors, with the rewrites that make that architecture
     compute the model exactly                        gguf_arch.gguf_tensors
  3. tokenizer -> GGUF tokenizer metadata             gguf_vocab.vocab_from_tokenizer
  4. write F32 (or F16) with gguf-py; other precisions through llama.cpp's own
     quantizer                                        gguf_llama.quantize
  5. parity: llama.cpp tokenizes the parity texts exactly like the HF tokenizer,
     and its logits match PyTorch's within the precision's thresholds
     (exporters/parity.py); a miss raises ParityError and removes the file.
Everything is written under a temporary name in the output folder and renamed only
after parity passes; the summary goes next to it as `<name>.export_summary.json`.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import UserError
from ..progress import console, count_progress, status
from . import gguf_arch, gguf_llama, gguf_vocab
from .parity import PARITY_PROMPTS, ParityError, compare

QUANTS = ("f32", "f16", "q8_0", "q4_k_m", "q4_0")
_QUANT_ALIASES = {"fp32": "f32", "fp16": "f16", "q8": "q8_0", "q4": "q4_k_m"}
SUMMARY_SUFFIX = ".export_summary.json"
PARAGRAPH_LANGS = ("en", "de", "fr", "ru", "zh")
N_PARAGRAPHS = 4
PARAGRAPH_TOKENS = 128
SAMPLE_PROMPT = "The capital of France is"
# gemma4's linearised V needs attn_v's tiny values (2^-k scale) kept with an 8-bit exponent:
# F32 in f32/f16 files, BF16 (same exponent range, half the bytes) in quantized ones.
V_WIDE_TYPE = "bf16"


def normalize_quant(quant: str | None) -> str:
    q = (quant or "q8_0").strip().lower()
    q = _QUANT_ALIASES.get(q, q)
    if q not in QUANTS:
        raise UserError(f"unknown GGUF quantization '{quant}'; choose one of {', '.join(QUANTS)}")
    return q


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


# ----------------------------------------------------------------------------- loading

def load_for_export(spec: str | Path | None):
    """A LoadedModel from what --model names, pruned directories (per-layer widths) included."""
    from ..models.loader import (LoadedModel, check_architecture, fingerprint, load_model,
                                 read_config, resolve_model_dir)

    model_dir = resolve_model_dir(None if spec is None else str(spec))
    cfg = read_config(model_dir)
    arch = check_architecture(model_dir)
    if not any(model_dir.glob("*.safetensors")):
        raise UserError(f"'{model_dir}' has no .safetensors weights; give a Hugging Face model "
                        f"directory or one written by 'babel-edge prune'")
    if "ffn_widths" not in cfg:
        return load_model(str(model_dir))
    from transformers import AutoTokenizer

    from ..models.adapters import adapter_for
    from ..prune_io import load_pruned

    with status(f"loading {model_dir.name}"):
        model = load_pruned(model_dir)
        extra = {} if arch == "mistral" else {"fix_mistral_regex": False}
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), **extra)
    return LoadedModel(model=model, tokenizer=tokenizer, spec=str(spec), path=model_dir, arch=arch,
                       family=adapter_for(arch).family, fingerprint=fingerprint(model_dir))


def _resolve(model_dir_or_loaded):
    from ..models.loader import LoadedModel

    if isinstance(model_dir_or_loaded, LoadedModel):
        return model_dir_or_loaded
    return load_for_export(model_dir_or_loaded)


def read_plan(model_dir: Path | None) -> dict | None:
    p = model_dir / "pruning_plan.json" if model_dir else None
    if p is None or not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- parity texts

def _plan_langs(plan: dict | None) -> list[str]:
    if not plan:
        return []
    for key in ("target_langs", "languages", "langs"):
        if isinstance(plan.get(key), list):
            return [str(x) for x in plan[key]]
    return []


def parity_texts(plan: dict | None, split: str = "eval") -> list[str]:
    """A few paragraphs of `split`: the plan's target languages first, then a spread of scripts.
    Parity reads the eval split; calibration of export rewrites reads the profile split."""
    try:
        from ..corpus import load_corpus

        corpus = load_corpus()
    except Exception:  # noqa: BLE001 - parity still runs on the prompts
        return []
    out = []
    for lang in dict.fromkeys(_plan_langs(plan) + list(PARAGRAPH_LANGS)):
        try:
            texts = corpus.texts(lang, split)
        except Exception:  # noqa: BLE001 - a language the corpus lacks is skipped
            continue
        if texts:
            out.append(max(texts[:20], key=len))
        if len(out) >= N_PARAGRAPHS:
            break
    return out


# ----------------------------------------------------------------------------- writing

def _general_metadata(w, lm, layout: gguf_arch.Layout, plan: dict | None, info: dict) -> None:
    cfg = lm.model.config
    base = Path(str(getattr(cfg, "_name_or_path", "") or lm.path)).name or lm.path.name
    langs = _plan_langs(plan)
    w.add_type("model")
    if plan:
        rate = plan.get("realized_rate", plan.get("rate"))
        w.add_name(f"{base} (FFN pruned for {', '.join(langs) or '?'})")
        w.add_description(
            f"{lm.family} with its FFN pruned by babel-edge {__version__} to "
            f"{sum(layout.widths)} of {sum(l.get('width_before', 0) for l in plan.get('layers', [])) or '?'} "
            f"neurons (rate {rate}) for the languages {', '.join(langs) or '?'}; "
            f"strategy {plan.get('strategy')}, schedule {plan.get('schedule')}.")
        w.add_array("babel_edge.pruning.target_langs", langs)
        if rate is not None:
            w.add_float32("babel_edge.pruning.rate", float(rate))
        for key in ("strategy", "schedule", "granularity"):
            if plan.get(key) is not None:
                w.add_string(f"babel_edge.pruning.{key}", str(plan[key]))
        vs = plan.get("vocab") or {}
        if vs.get("trimmed"):             # vocabulary trimmed to the targets (babel_edge.vocab)
            w.add_uint32("babel_edge.vocab.size_before", int(vs["vocab_before"]))
            w.add_uint32("babel_edge.vocab.kept", int(vs["kept"]))
            w.add_string("babel_edge.vocab.tokenizer_kind", str(vs.get("tokenizer_kind")))
    else:
        w.add_name(base)
    if any(lm.path.glob("*GEMMA*")) or "gemma" in lm.arch:
        w.add_license("gemma")
        w.add_license_link("https://ai.google.dev/gemma/terms")
    w.add_string("babel_edge.version", __version__)
    w.add_string("babel_edge.source_fingerprint", str(lm.fingerprint))
    w.add_array("babel_edge.ffn_widths", [int(x) for x in layout.widths])
    if layout.padded:
        w.add_array("babel_edge.ffn_widths_stored", [int(x) for x in layout.stored])
        w.add_string("babel_edge.padding", "; ".join(layout.notes))
    v = info.get("v_norm_linearised")
    if v:
        w.add_array("babel_edge.gemma4.log2_v_scale", [int(k) for k in v["log2_v_scale"]])


F16_MAX = 65504.0


def _write(path: Path, lm, layout, tensors: dict[str, np.ndarray], vocab, plan, info,
           dtype: str) -> list[str]:
    """One GGUF with gguf-py: dtype 'f32', or 'f16' (2-D weights; norms, gemma4's attn_v and
    any tensor beyond F16's range stay F32). Returns the tensors kept F32 for their range."""
    import gguf

    w = gguf.GGUFWriter(str(path), layout.target.arch)
    _general_metadata(w, lm, layout, plan, info)
    gguf_arch.write_hparams(w, lm.model, layout)
    vocab.write(w)
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    wide = layout.target.arch == "gemma4"
    kept = []
    for name, arr in tensors.items():
        if dtype == "f16" and arr.ndim == 2 and not (wide and name.endswith("attn_v.weight")):
            if float(np.abs(arr).max()) > F16_MAX:
                kept.append(name)              # would overflow: stays F32 (reported)
            else:
                arr = arr.astype(np.float16)
        w.add_tensor(name, np.ascontiguousarray(arr))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return kept


# ----------------------------------------------------------------------------- parity

@contextlib.contextmanager
def _torch_threads(n: int | None):
    """Run torch with n intra-op threads (None: unchanged), restoring the setting after."""
    import torch

    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _parity(runner: gguf_llama.LlamaRunner, lm, quant: str, texts: list[str]):
    """(ParityReport, tokenizer check) of a GGUF in llama.cpp against the PyTorch model."""
    from .parity import torch_logits_fn

    tok = lm.tokenizer
    enc = lambda t: list(tok(t, add_special_tokens=True)["input_ids"])  # noqa: E731
    prompts = [enc(p) for p in PARITY_PROMPTS]
    para_ids = [enc(t)[:PARAGRAPH_TOKENS] for t in texts]
    mismatched = [text[:40] for text, ids in zip(PARITY_PROMPTS + texts, prompts + para_ids)
                  if runner.tokenize(text)[: len(ids)] != ids]
    paragraphs = [p for p in para_ids if len(p) > 1]
    ref = torch_logits_fn(lm.model)
    with count_progress(f"parity {quant} (torch vs llama.cpp)", len(prompts) + len(paragraphs),
                        "sequences") as advance:
        def exported(ids):
            r = runner.logits(ids)
            advance(1)
            return r
        report = compare(ref, exported, prompts, paragraphs, quant)
    n_texts = len(PARITY_PROMPTS) + len(texts)
    tok_check = {"texts": n_texts, "identical": n_texts - len(mismatched), "mismatched": mismatched}
    return report, tok_check, len(prompts), len(paragraphs)


# ----------------------------------------------------------------------------- export

def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"babel-edge": __version__}
    for pkg in ("llama_cpp_python", "gguf", "torch", "transformers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _unlink(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def export_gguf(model_dir_or_loaded, out: str | Path, quant: str = "q8_0", force: bool = False,
                *, align: int | None = None, threads: int | None = None,
                verbose: bool = True) -> dict:
    """Export a model (directory/spec, or a LoadedModel held in memory) to one GGUF file.

    quant: f32 | f16 | q8_0 | q4_k_m | q4_0 (the last three by llama.cpp's quantizer).
    align: zero-pad every layer's FFN width up to a multiple of this (exact), e.g. 256
    so that K-quants apply to ffn_down instead of falling back.
    Raises UserError on bad input and ParityError when llama.cpp does not reproduce the
    PyTorch model within the precision's thresholds (no file is left at `out` then).
    Returns the summary, also written to `<out stem>.export_summary.json`.
    """
    quant = normalize_quant(quant)
    out = check_out(out, force)
    if align is not None and align < 1:
        raise UserError(f"--align must be a positive number of neurons, not {align}")
    lm = _resolve(model_dir_or_loaded)
    model = lm.model
    if next(model.parameters()).dtype.__str__() != "torch.float32":
        raise UserError("GGUF export starts from a float32 model; load it without a dtype override")
    model.eval()
    t0 = time.time()
    layout = gguf_arch.choose_layout(model, align)
    plan = read_plan(lm.path)
    with status(f"preparing {layout.target.arch} tensors"):
        calib = None
        if layout.target.arch == "gemma4":         # V rewrite looks at V's range on real text
            calib = [lm.tokenizer(t)["input_ids"][:PARAGRAPH_TOKENS]
                     for t in parity_texts(plan, "profile")]
        with _torch_threads(threads):
            tensors, info = gguf_arch.gguf_tensors(model, layout, calib)
        n_vocab = int(tensors["token_embd.weight"].shape[0])
        vocab = gguf_vocab.vocab_from_tokenizer(lm.tokenizer, n_vocab, lm.path)
        if len(vocab.tokens) != n_vocab:
            raise UserError(f"the tokenizer has {len(vocab.tokens)} tokens but the embedding "
                            f"{n_vocab} rows; the model directory is inconsistent")

    out.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{int(t0 * 1000) % 100000}"
    tmp = out.with_name(f".{out.stem}.partial-{tag}.gguf")
    tmp_f32 = out.with_name(f".{out.stem}.f32-{tag}.gguf")
    runner = None
    try:
        if quant in ("f32", "f16"):
            with status(f"writing {quant} GGUF ({layout.target.arch})"):
                kept = _write(tmp, lm, layout, tensors, vocab, plan, info, quant)
            if quant == "f16" and kept:
                info["kept_f32_in_f16_file"] = kept
            t_write, t_quant = time.time() - t0, 0.0
        else:
            with status(f"writing F32 GGUF ({layout.target.arch})"):
                _write(tmp_f32, lm, layout, tensors, vocab, plan, info, "f32")
            t_write = time.time() - t0
            keep = {r"attn_v\.weight": V_WIDE_TYPE} if layout.target.arch == "gemma4" else None
            t1 = time.time()
            with status(f"quantizing to {quant} with llama.cpp"):
                gguf_llama.quantize(tmp_f32, tmp, quant, keep=keep, threads=threads)
            _unlink(tmp_f32)
            t_quant = time.time() - t1
        del tensors
        types = gguf_llama.tensor_types(tmp)

        t2 = time.time()
        texts = parity_texts(plan)
        n_ctx = max(64, PARAGRAPH_TOKENS + 16)
        # small models: one thread (ggml's spinning workers lose badly on a shared CPU)
        run_threads = threads or (1 if types["elements"] < 50_000_000 else None)
        with status("loading the GGUF in llama.cpp"):
            runner = gguf_llama.LlamaRunner(tmp, n_ctx=n_ctx, threads=run_threads)
        with _torch_threads(run_threads):
            report, tok_check, n_prompts, n_paras = _parity(runner, lm, quant, texts)
        sample = runner.generate(SAMPLE_PROMPT)
        runner.close()
        runner = None
        t_parity = time.time() - t2
        failures = list(report.failures)
        if tok_check["mismatched"]:
            failures.append(f"llama.cpp tokenizes {len(tok_check['mismatched'])} of "
                            f"{tok_check['texts']} parity texts differently from the HF tokenizer "
                            f"(e.g. {tok_check['mismatched'][0]!r})")
        if failures:
            raise ParityError(f"GGUF export failed parity ({quant}, {layout.target.arch}): "
                              + "; ".join(failures) + f" [{report.summary()}]")
        os.replace(tmp, out)
    finally:
        if runner is not None:
            runner.close()
        _unlink(tmp, tmp_f32)

    cfg = model.config
    hidden = cfg.hidden_size
    ffn_bytes = sum(b for k, b in types["bytes_by_tensor"].items()
                    if any(f".{x}." in k for x in ("ffn_gate", "ffn_up", "ffn_down")))
    summary = {
        "format": "gguf",
        "precision": quant,
        "path": str(out),
        "source": str(lm.path),
        "family": lm.family,
        "model_type": lm.arch,
        "architecture": layout.target.arch,
        "native_architecture": gguf_arch.adapter_for(lm.arch).gguf_arch,
        "architecture_reason": layout.reason,
        "file_bytes": out.stat().st_size,
        "ffn_bytes": ffn_bytes,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "gguf_elements": types["elements"],
        "ffn_widths": layout.widths,
        "ffn_width_max": max(layout.widths),
        "per_layer_widths": len(set(layout.widths)) > 1,
        "padded": layout.padding(hidden),
        "notes": layout.notes,
        "rewrites": info,
        "tensor_types": types["count"],
        "bytes_by_type": types["bytes"],
        "tensor_types_by_tensor": types["by_tensor"],
        "k_quant_fallbacks": _fallbacks(types, quant),
        "tokenizer": {**vocab.summary(), "check": tok_check},
        "parity": {**report.to_dict(), "prompts": n_prompts, "paragraphs": n_paras,
                   "engine": "llama.cpp (llama-cpp-python), default context settings"},
        "sample": {"prompt": SAMPLE_PROMPT, "greedy": sample},
        "pruning": None if plan is None else {
            k: plan.get(k) for k in ("target_langs", "rate", "realized_rate", "strategy", "schedule")},
        "seconds": {"write": round(t_write, 1), "quantize": round(t_quant, 1),
                    "parity": round(t_parity, 1), "total": round(time.time() - t0, 1)},
        "versions": _versions(),
    }
    sp = summary_path(out)
    tmp_json = sp.with_name(f".{sp.name}.tmp")
    tmp_json.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp_json, sp)
    summary["summary_path"] = str(sp)
    if verbose and os.environ.get("BABEL_EDGE_QUIET") != "1":
        console.print(format_summary(summary))
    return summary


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


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def format_summary(s: dict) -> str:
    """A few human lines; the JSON file has everything."""
    p = s["parity"]
    widths = s["ffn_widths"]
    types = ", ".join(f"{t}×{n}" for t, n in s["tensor_types"].items())
    lines = [
        f"GGUF {s['precision']} export of {s['family']} → {s['path']}",
        f"  architecture '{s['architecture']}' ({s['architecture_reason']})",
        f"  {_mb(s['file_bytes'])} ({_mb(s['ffn_bytes'])} FFN), {s['parameters']:,} parameters; "
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
    lines.append(
        f"  parity: max|Δlogit| {p['max_abs_diff']:.3g}, argmax {p['argmax_agreement']:.1%} over "
        f"{p['positions']} positions ({p['prompts']} prompts, {p['paragraphs']} paragraphs), "
        f"perplexity ×{p['ppl_ratio']:.4f}, tokenizer {s['tokenizer']['check']['identical']}/"
        f"{s['tokenizer']['check']['texts']} identical — {'pass' if p['passed'] else 'FAIL'}")
    lines.append(f"  sample: {s['sample']['prompt']!r} → {s['sample']['greedy']!r}")
    lines.append(f"  summary: {s.get('summary_path', '')}")
    return "\n".join(lines)

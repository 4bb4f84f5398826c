"""GGUF export of a model bigger than memory: one decoder layer at a time.

    export_gguf_streamed(model_dir, "out.gguf", quant="q8_0")   # -> summary dict

The model is never built: the tensors of one layer (and, once, the embedding, final norm
and head) are read from the safetensors shards, converted by the same code the in-memory
export uses (tensors.convert_group, with the target's rewrites), and written. gguf-py
needs every tensor's shape before the first byte of data, so the groups are converted
twice: once for the tensor table, once to write. F16 is written (norms and tensors the
target keeps wide stay F32); other precisions come from llama.cpp's quantizer. Peak
memory: one layer's tensors (and the embedding), whatever the model's size.

Parity runs in a fresh process (`python -m babel_edge.exporters.gguf.stream --parity`):
it loads the PyTorch model and the GGUF like the in-memory export's check does, so this
process's memory stays bounded; its peak is reported separately.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import numpy as np

from ... import precision as P
from ...errors import UserError

_LAYER = re.compile(r"\.layers\.(\d+)\.")


def _groups(model_dir: Path) -> tuple[dict[str, Path], list[str], dict[int, list[str]]]:
    from ...prune.stream import tensor_names

    where = tensor_names(model_dir)
    glob, layers = [], {}
    for name in where:
        if name.endswith("rotary_emb.inv_freq"):
            continue
        m = _LAYER.search(name)
        if m:
            layers.setdefault(int(m.group(1)), []).append(name)
        else:
            glob.append(name)
    return where, glob, layers


def _read(where: dict[str, Path], names: list[str]) -> dict[str, np.ndarray]:
    import torch
    from safetensors import safe_open

    out = {}
    by_file: dict[Path, list[str]] = {}
    for n in names:
        by_file.setdefault(where[n], []).append(n)
    for f, ns in by_file.items():
        with safe_open(str(f), "pt") as fh:
            for n in ns:
                out[n] = fh.get_tensor(n).to(torch.float32).numpy()
    return out


def converted(model_dir: Path, cfg, layout) -> Iterator[tuple[dict[str, np.ndarray], dict]]:
    """(GGUF tensors, rewrite info) group by group: the global tensors, then layer by layer."""
    where, glob, layers = _groups(model_dir)
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    yield _global(where, glob, cfg, layout, tied)
    for il in sorted(layers):
        from .tensors import convert_group
        yield convert_group(_read(where, layers[il]), cfg, layout, [il], False)


def _global(where, glob, cfg, layout, tied):
    from .tensors import convert_group

    hf = _read(where, glob)
    if tied:                                    # a tied head is stored once (token_embd)
        hf = {k: v for k, v in hf.items() if not k.startswith("lm_head")}
    return convert_group(hf, cfg, layout, [], True)


def _wide_patterns(layout) -> list[re.Pattern]:
    overrides = layout.target.quant_overrides() if layout.target.quant_overrides else {}
    return [re.compile(p) for p in overrides]


def _stored(name: str, arr: np.ndarray, wide) -> np.ndarray:
    """F16 for 2-D weights, F32 for the rest, for tensors the target keeps wide and for any
    beyond F16's range (the same rule as writer.write_file's F16 branch)."""
    from .writer import F16_MAX

    if arr.ndim == 2 and not any(r.search(name) for r in wide) and float(np.abs(arr).max()) <= F16_MAX:
        return arr.astype(np.float16)
    return arr.astype(np.float32)


def write_streamed(path: Path, model_dir: Path, cfg, layout, vocab, lm_like, plan) -> dict:
    """One F16 GGUF written group by group; returns the merged rewrite info."""
    import gguf

    from .tensors import write_hparams
    from .writer import general_metadata

    wide = _wide_patterns(layout)
    info: dict = {}
    table = []
    for tensors, inf in converted(model_dir, cfg, layout):          # pass 1: the tensor table
        _merge(info, inf)
        for name, arr in tensors.items():
            a = _stored(name, arr, wide)
            table.append((name, a.shape, a.dtype, a.nbytes))
    w = gguf.GGUFWriter(str(path), layout.target.arch)
    general_metadata(w, lm_like, layout, plan, info)
    write_hparams(w, lm_like.model, layout)
    vocab.write(w)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for name, shape, dtype, nbytes in table:
        w.add_tensor_info(name, shape, dtype, nbytes)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    order = iter(table)
    for tensors, _ in converted(model_dir, cfg, layout):            # pass 2: the data
        for name, arr in tensors.items():
            expect = next(order)
            if expect[0] != name:
                raise RuntimeError(f"tensor order changed between passes ({expect[0]} vs {name})")
            w.write_tensor_data(_stored(name, arr, wide))
    w.close()
    return info


def _merge(info: dict, inf: dict) -> None:
    for k, v in inf.items():
        if k == "v_norm_linearised" and k in info:
            info[k]["log2_v_scale"] += v["log2_v_scale"]
        else:
            info.setdefault(k, v)


def export_gguf_streamed(model_dir: str | Path, out: str | Path, quant: str = "q8_0", *,
                         force: bool = False, threads: int | None = None,
                         parity: bool = True) -> dict:
    """Export a model directory (a pruned one, or any HF directory) to one GGUF without
    loading it; parity in a fresh process. Returns the summary (also written next to it)."""
    from transformers import AutoConfig, AutoTokenizer

    from ...io import atomic_file, remove, write_json
    from ...models.adapters import adapter_for
    from ...models.loader import fingerprint, read_config
    from ...prune.plan import PruningPlan
    from . import check_out, llama, summary_path
    from . import vocab as gguf_vocab
    from .layout import layout_for

    quant = P.get("gguf", quant).name
    out = check_out(out, force)
    d = Path(model_dir).expanduser()
    raw = read_config(d)
    cfg = AutoConfig.from_pretrained(str(d))
    cfg = getattr(cfg, "text_config", cfg)
    n = int(raw.get("num_hidden_layers") or cfg.num_hidden_layers)
    widths = raw.get("ffn_widths") or [int(cfg.intermediate_size)] * n
    layout = layout_for(cfg, widths)
    plan = PruningPlan.read(d)
    extra = {} if cfg.model_type == "mistral" else {"fix_mistral_regex": False}
    tokenizer = AutoTokenizer.from_pretrained(str(d), **extra)
    vocab = gguf_vocab.vocab_from_tokenizer(tokenizer, int(cfg.vocab_size), d)
    ad = adapter_for(cfg.model_type)
    lm_like = SimpleNamespace(model=SimpleNamespace(config=cfg), path=d, family=ad.family,
                              arch=cfg.model_type, fingerprint=fingerprint(d))
    t0 = time.time()
    f16 = out.with_name(f"{out.name}.f16-{os.getpid()}")
    try:
        with atomic_file(out) as tmp:
            target = tmp if quant == "f16" else f16
            info = write_streamed(target, d, cfg, layout, vocab, lm_like, plan)
            if quant == "f32":
                raise UserError("the streamed export writes F16 (or quantizes from it); f32 "
                                "would double a big model's file — use the in-memory export")
            if quant != "f16":
                keep = layout.target.quant_overrides() if layout.target.quant_overrides else None
                llama.quantize(f16, tmp, P.get("gguf", quant).llama_ftype, keep=keep,
                               threads=threads)
            remove(f16)
            rep = parity_in_subprocess(tmp, d, quant, threads) if parity else None
            if rep is not None and not rep["passed"]:
                from ..parity import ParityError
                raise ParityError(f"streamed GGUF export failed parity ({quant}): "
                                  + "; ".join(rep["failures"]))
    finally:
        remove(f16)
    summary = {"format": "gguf", "precision": quant, "path": str(out), "source": str(d),
               "streamed": True, "architecture": layout.target.arch, "ffn_widths": layout.widths,
               "file_bytes": out.stat().st_size, "rewrites": info, "parity": rep,
               "seconds": round(time.time() - t0, 1)}
    summary["tensor_types"] = llama.tensor_types(out)["count"]
    summary["summary_path"] = str(write_json(summary_path(out), summary))
    return summary


def format_streamed_summary(s: dict) -> str:
    """A few human lines for a streamed export; the JSON file has everything."""
    from ..parity import mb, summary_line

    types = ", ".join(f"{t}×{n}" for t, n in s["tensor_types"].items())
    w = s["ffn_widths"]
    lines = [f"GGUF {s['precision']} export (streamed, layer by layer) of {s['source']} → {s['path']}",
             f"  architecture '{s['architecture']}', {mb(s['file_bytes'])}; tensors {types}",
             f"  FFN widths: {w[0] if len(set(w)) == 1 else w}"]
    if s["parity"]:
        lines.append(summary_line(s["parity"], f" (own process, peak RSS "
                                               f"{s['parity']['peak_rss_mb']:,.0f} MB)"))
    lines.append(f"  summary: {s['summary_path']}")
    return "\n".join(lines)


def parity_in_subprocess(gguf_path: Path, model_dir: Path, quant: str, threads: int | None) -> dict:
    """The export's parity check (gguf.run_parity) in a fresh process; its report, with that
    process's peak RSS."""
    import subprocess

    cmd = [sys.executable, "-m", "babel_edge.exporters.gguf.stream", "--parity", str(gguf_path),
           str(model_dir), quant] + ([str(threads)] if threads else [])
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, BABEL_EDGE_QUIET="1"))
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"the parity process failed: {tail}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _parity_main(argv: list[str]) -> int:
    from ...models import load_model
    from ...prune.plan import PruningPlan
    from ...runtime.bench import peak_rss_mb
    from . import run_parity

    gguf_path, model_dir, quant = Path(argv[0]), Path(argv[1]), argv[2]
    threads = int(argv[3]) if len(argv) > 3 else None
    lm = load_model(str(model_dir))
    report, tok, n_prompts, n_paras, sample = run_parity(
        gguf_path, lm, PruningPlan.read(model_dir), quant, threads,
        sum(p.numel() for p in lm.model.parameters()))
    failures = list(report.failures) + ([f"tokenizer differs on {len(tok['mismatched'])} texts"]
                                        if tok["mismatched"] else [])
    print(json.dumps({**report.to_dict(), "passed": not failures, "failures": failures,
                      "prompts": n_prompts, "paragraphs": n_paras, "sample": sample,
                      "peak_rss_mb": peak_rss_mb()}))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--parity"]:
        sys.exit(_parity_main(sys.argv[2:]))

"""A model bigger than we like to hold: prune and export tensor by tensor (issue 16's bound).

Builds a random-initialised Llama-shaped model of ~3B parameters in bf16 on the fly (written
layer by layer to safetensors shards, never held whole), then, in a fresh process:
  prune   babel_edge.prune.stream (magnitude, uniform, --rate; no compensation: a calibration
          needs forward passes of the whole model)
  export  babel_edge.exporters.gguf.stream to --quant (F16 written layer by layer, then
          llama.cpp's quantizer), parity in its own process
and reports that process's peak RSS (VmHWM) against the model's bf16 size, and the parity
process's peak separately. The ~3B model's tokenizer is a byte-level BPE of --vocab tokens
trained on corpus text (a random model has no tokenizer of its own).

    python bench/bench_scale.py [--layers 28] [--hidden 3072] [--ffn 8192] [--work DIR]

Writes bench/results/scale.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from common import log

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "scale"




def build_random_model(out: Path, layers: int, hidden: int, ffn: int, heads: int, kv: int,
                       vocab_texts: list[str], vocab: int, seed: int = 0) -> int:
    """A random Llama of this shape in bf16, written one layer per shard. Returns parameters."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    from babel_edge.models.tiny import tiny_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    tok = tiny_tokenizer(vocab_texts, vocab_size=vocab)
    tok.save_pretrained(out)
    hd = hidden // heads
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=ffn,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
                      max_position_embeddings=2048, tie_word_embeddings=False, torch_dtype="bfloat16",
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    cfg.save_pretrained(out)
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *shape: (torch.randn(*shape, generator=g) * (1 / math.sqrt(shape[-1]))).bfloat16()  # noqa: E731
    index, n_params = {}, 0

    def write(name: str, tensors: dict) -> None:
        nonlocal n_params
        save_file(tensors, str(out / name), metadata={"format": "pt"})
        index.update({k: name for k in tensors})
        n_params += sum(t.numel() for t in tensors.values())

    V = len(tok)
    write("model-embed.safetensors", {"model.embed_tokens.weight": rnd(V, hidden),
                                      "lm_head.weight": rnd(V, hidden),
                                      "model.norm.weight": torch.ones(hidden, dtype=torch.bfloat16)})
    for i in range(layers):
        p = f"model.layers.{i}."
        write(f"model-layer{i:03d}.safetensors", {
            p + "self_attn.q_proj.weight": rnd(heads * hd, hidden),
            p + "self_attn.k_proj.weight": rnd(kv * hd, hidden),
            p + "self_attn.v_proj.weight": rnd(kv * hd, hidden),
            p + "self_attn.o_proj.weight": rnd(hidden, heads * hd),
            p + "mlp.gate_proj.weight": rnd(ffn, hidden),
            p + "mlp.up_proj.weight": rnd(ffn, hidden),
            p + "mlp.down_proj.weight": rnd(hidden, ffn),
            p + "input_layernorm.weight": torch.ones(hidden, dtype=torch.bfloat16),
            p + "post_attention_layernorm.weight": torch.ones(hidden, dtype=torch.bfloat16)})
    total = sum((out / f).stat().st_size for f in set(index.values()))
    (out / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": index}))
    return n_params


STAGE = r"""
import json, sys, time
from pathlib import Path
from babel_edge.prune import PruneOptions
from babel_edge.prune.stream import plan_streamed, prune_streamed
from babel_edge.exporters.gguf.stream import export_gguf_streamed
from babel_edge.runtime.bench import peak_rss_mb
src, out, gguf_path, rate, quant = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
t0 = time.time()
plan = plan_streamed(src, ["en"], rate, PruneOptions(strategy="magnitude", schedule="uniform",
                                                     compensate=False))
prune_streamed(src, plan, out)
t1 = time.time()
s = export_gguf_streamed(out, gguf_path, quant, force=True)
print(json.dumps({"peak_rss_mb": peak_rss_mb(), "prune_s": t1 - t0, "export_s": time.time() - t1,
                  "gguf_bytes": s["file_bytes"], "parity": s["parity"],
                  "architecture": s["architecture"], "widths": plan.widths}))
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layers", type=int, default=28)
    p.add_argument("--hidden", type=int, default=3072)
    p.add_argument("--ffn", type=int, default=8192)
    p.add_argument("--heads", type=int, default=24)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--rate", type=float, default=0.5)
    p.add_argument("--quant", default="q8_0")
    p.add_argument("--work", default="/tmp/babel-edge-scale")
    a = p.parse_args(argv)

    from babel_edge.corpus import load_corpus
    from babel_edge.io import remove, write_json, write_text

    work = Path(a.work)
    remove(work)
    src = work / "random-3b"
    t = time.time()
    texts = [x for l in ("en", "de", "fr") for x in load_corpus().texts(l, "profile")[:2000]]
    n = build_random_model(src, a.layers, a.hidden, a.ffn, a.heads, a.kv_heads, texts, a.vocab)
    bf16 = sum(f.stat().st_size for f in src.glob("*.safetensors"))
    log(f"random model: {n:,} parameters, {bf16 / 1e9:.2f} GB bf16 ({time.time() - t:.0f} s)")
    r = subprocess.run([sys.executable, "-c", STAGE, str(src), str(work / "pruned"),
                        str(work / f"pruned.{a.quant}.gguf"), str(a.rate), a.quant],
                       capture_output=True, text=True, env=dict(os.environ, BABEL_EDGE_QUIET="1"))
    if r.returncode != 0:
        print(r.stderr[-3000:], file=sys.stderr)
        return 1
    stage = json.loads(r.stdout.strip().splitlines()[-1])
    res = {"parameters": n, "bf16_bytes": bf16, "shape": {k: getattr(a, k) for k in
                                                          ("layers", "hidden", "ffn", "heads", "kv_heads", "vocab")},
           "rate": a.rate, "quant": a.quant, **stage,
           "peak_share_of_bf16": stage["peak_rss_mb"] * 2**20 / bf16,
           "command": "python bench/bench_scale.py " + " ".join(argv or sys.argv[1:])}
    write_json(RESULTS.with_suffix(".json"), res)
    md = ["# Pruning and exporting a model bigger than we hold — a random ~3B Llama", "",
          f"Made by `{res['command']}`. {n:,} parameters, {bf16 / 1e9:.2f} GB in bf16 "
          f"(layers {a.layers}, hidden {a.hidden}, FFN {a.ffn}, heads {a.heads}/{a.kv_heads}, "
          f"vocabulary {a.vocab}); FFN rate {a.rate} (magnitude, uniform), GGUF {a.quant} "
          f"({res['architecture']}).", "",
          "| | value |", "|---|---:|",
          f"| peak RSS, prune + export process | {stage['peak_rss_mb']:,.0f} MB "
          f"({res['peak_share_of_bf16']:.0%} of the bf16 model) |",
          f"| prune (streamed) | {stage['prune_s']:.0f} s |",
          f"| export (streamed F16 + quantize + parity) | {stage['export_s']:.0f} s |",
          f"| GGUF file | {stage['gguf_bytes'] / 1e9:.2f} GB |",
          f"| parity (own process, peak RSS {stage['parity']['peak_rss_mb']:,.0f} MB) | argmax "
          f"{stage['parity']['argmax_agreement']:.1%}, perplexity x{stage['parity']['ppl_ratio']:.4f}, "
          f"{'pass' if stage['parity']['passed'] else 'FAIL'} |"]
    write_text(RESULTS.with_suffix(".md"), "\n".join(md) + "\n")
    print("\n".join(md))
    remove(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Calibration statistics of the FFN neurons on target-language text, and what the
pruner does with them: least-squares compensation and massive-neuron detection.

One pass of the model over the PROFILE split of the target languages (never the
eval split) records, per layer, at the input of the down projection (the
neurons, a: [tokens, F]):

    C        = E[a a^T]       [F, F]  second moment, accumulated in fp64, stored fp32
    mean_abs = E[|a|]         [F]
    max_abs  = max |a|        [F]

over every non-padding position (BOS included: eval scores from it too). Each
target language contributes the same number of tokens (its first paragraphs,
corpus order), so the languages weigh equally. The result is cached under
<cache>/calib/ by model fingerprint + languages + token count + a hash of the
exact token ids, so a changed corpus or tokenizer never reuses stale numbers.
For Gemma 3 270M: 18 x 2048^2 fp32 = 302 MB on disk.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..progress import count_progress
from .options import MASSIVE_RATIO, RIDGE, RIDGE_GRID  # noqa: F401 - re-exported


@dataclass
class Calibration:
    langs: list[str]
    n_tokens: int                                   # positions accumulated
    key: str                                        # cache key (see module doc)
    second: list[torch.Tensor] = field(repr=False)  # per layer [F, F] float32, E[a a^T]
    mean_abs: list[torch.Tensor] = field(repr=False)   # per layer [F]
    max_abs: list[torch.Tensor] = field(repr=False)    # per layer [F]

    def meta(self) -> dict:
        return {"langs": self.langs, "n_tokens": self.n_tokens, "key": self.key}


def calibration_sequences(texts_for: Callable[[str], Sequence[str]], langs: Sequence[str],
                          tokenize: Callable[[str], list[int]], n_tokens: int,
                          max_len: int = 512) -> list[list[int]]:
    """Token id sequences: each language's first paragraphs until n_tokens / len(langs) tokens."""
    per_lang = max(1, n_tokens // len(langs))
    seqs: list[list[int]] = []
    for lang in langs:
        got = 0
        for text in texts_for(lang):
            ids = tokenize(text)[:max_len]
            if len(ids) < 2:
                continue
            if got + len(ids) > per_lang:
                ids = ids[:max(2, per_lang - got)]
            seqs.append(ids)
            got += len(ids)
            if got >= per_lang:
                break
    return seqs


def _key(fingerprint: str, langs: Sequence[str], seqs: Sequence[Sequence[int]]) -> str:
    h = hashlib.sha256(json.dumps([fingerprint, list(langs)]).encode())
    for s in seqs:
        h.update(torch.tensor(s, dtype=torch.int64).numpy().tobytes())
        h.update(b"|")
    n = sum(len(s) for s in seqs)
    return f"{fingerprint[:12]}-{'_'.join(langs)}-{n}-{h.hexdigest()[:12]}"


@torch.inference_mode()
def collect(model, seqs: Sequence[Sequence[int]], pad_id: int = 0, batch_size: int = 8,
            langs: Sequence[str] = (), key: str = "",
            label: str = "calibrating (target languages, profile split)") -> Calibration:
    """Run the model over `seqs` and accumulate the neuron statistics of every FFN layer.
    Under torchrun each rank runs its share of the batches (batch i to rank i mod world: the
    same batches one process makes) and the sums (fp64), maxima and token counts are combined
    across ranks, so every rank ends with the statistics of one process."""
    from .. import distributed as dd
    from ..models.adapters import ffn_layers

    views = ffn_layers(model)
    acc = [torch.zeros(v.width, v.width, dtype=torch.float64) for v in views]
    s_abs = [torch.zeros(v.width, dtype=torch.float64) for v in views]
    m_abs = [torch.zeros(v.width) for v in views]
    state: dict = {}

    def hook(i):
        def pre(_mod, args):
            a = args[0][state["mask"]].float()               # [n, F] real tokens only
            acc[i] += (a.T @ a).double()                     # fp32 GEMM, fp64 running sum
            s_abs[i] += a.abs().sum(0).double()
            m_abs[i] = torch.maximum(m_abs[i], a.abs().max(0).values)
        return pre

    handles = [v.down.register_forward_pre_hook(hook(v.index)) for v in views]
    n = 0
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    total = sum(len(s) for s in seqs)
    try:
        with count_progress(label, total,
                            unit="tokens") as advance:
            for bi, b0 in enumerate(range(0, len(order), batch_size)):
                if bi % dd.world() != dd.rank():
                    continue
                batch = [seqs[i] for i in order[b0:b0 + batch_size]]
                L = max(len(s) for s in batch)
                ids = torch.full((len(batch), L), pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), L), dtype=torch.bool)
                for j, s in enumerate(batch):
                    ids[j, :len(s)] = torch.tensor(s)
                    mask[j, :len(s)] = True
                state["mask"] = mask
                model.get_decoder()(input_ids=ids, attention_mask=mask.long())
                k = int(mask.sum())
                n += k
                advance(k * dd.world())
    finally:
        for h in handles:
            h.remove()
    dd.all_reduce_(acc + s_abs)
    dd.all_reduce_(m_abs, op="max")
    n = max(dd.all_reduce_int(n), 1)
    return Calibration(list(langs), n, key, [(c / n).float() for c in acc],
                       [(s / n).float() for s in s_abs], m_abs)


def save(cal: Calibration, path: Path) -> None:
    from safetensors.torch import save_file

    from ..io import atomic_file

    tensors = {}
    for i in range(len(cal.second)):
        tensors[f"second.{i}"] = cal.second[i].contiguous()
        tensors[f"mean_abs.{i}"] = cal.mean_abs[i].contiguous()
        tensors[f"max_abs.{i}"] = cal.max_abs[i].contiguous()
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp), metadata={"babel_edge_calibration": json.dumps(cal.meta())})


# What reading a truncated or garbled cache file raises (safetensors' own error is a
# SafetensorError, an Exception subclass it does not export by a stable name).
CORRUPT_CACHE_ERRORS = (KeyError, ValueError, RuntimeError, EOFError, OSError)
try:
    from safetensors import SafetensorError as _SafetensorError
    CORRUPT_CACHE_ERRORS = CORRUPT_CACHE_ERRORS + (_SafetensorError,)
except ImportError:  # pragma: no cover - older safetensors
    pass


def load(path: Path) -> Calibration:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["babel_edge_calibration"])
        n_layers = sum(1 for k in f.keys() if k.startswith("second."))
        get = lambda name: [f.get_tensor(f"{name}.{i}") for i in range(n_layers)]  # noqa: E731
        return Calibration(meta["langs"], int(meta["n_tokens"]), meta["key"], get("second"),
                           get("mean_abs"), get("max_abs"))


def calibrate(model, tokenizer, fingerprint: str, texts_for: Callable[[str], Sequence[str]],
              langs: Sequence[str], n_tokens: int = 16384, max_len: int = 512,
              cache: Path | None = None,
              label: str = "calibrating (target languages, profile split)") -> Calibration:
    """Calibration statistics for `langs`, from the cache when the same tokens were seen before."""
    from ..evaluate import hf_tokenize
    from ..models import cache_dir

    langs = sorted(langs)
    seqs = calibration_sequences(texts_for, langs, hf_tokenize(tokenizer), n_tokens, max_len)
    key = _key(fingerprint, langs, seqs)
    path = (cache or cache_dir() / "calib") / f"{key}.safetensors"
    if path.exists():
        try:
            return load(path)
        except CORRUPT_CACHE_ERRORS:           # a damaged cache entry is recomputed, not trusted
            path.unlink(missing_ok=True)
    from .. import distributed as dd

    cal = collect(model, seqs, pad_id=tokenizer.pad_token_id or 0, langs=langs, key=key, label=label)
    if dd.is_main():
        save(cal, path)
    return cal


# ------------------------------------------------------------------ uses

def massive_neurons(mean_abs: torch.Tensor, ratio: float = MASSIVE_RATIO) -> torch.Tensor:
    """Ids of a layer's neurons with mean |a| >= ratio x the layer median (sorted)."""
    med = mean_abs.median().clamp_min(1e-12)
    return (mean_abs >= ratio * med).nonzero().squeeze(1)


def compensate(down_weight: torch.Tensor, second: torch.Tensor, kept: torch.Tensor,
               ridge: float = RIDGE) -> torch.Tensor:
    """Refit the kept down-projection columns so the layer output on calibration text is kept.

    Least squares over calibration tokens: minimise E|| W a - W_K a_K ||^2 over W_K.
    Normal equations: W_K (C_KK + lam I) = W C[:, K], so

        W_K = W C[:, K] (C[K, K] + lam I)^-1,   lam = ridge * mean(diag C[K, K])

    down_weight: [H, F]; second: C [F, F]; kept: [k] neuron ids -> [H, k] (dtype of W).
    Solved in fp64 by Cholesky; adds nothing at inference time.
    """
    W = down_weight.detach().double()                       # [H, F]
    C = second.double()                                     # [F, F]
    C_kk = C[kept][:, kept]                                 # [k, k]
    lam = ridge * float(C_kk.diagonal().mean().clamp_min(1e-30))
    A = C_kk + lam * torch.eye(len(kept), dtype=torch.float64)
    rhs = C[kept] @ W.T                                     # [k, H] = (W C[:, K])^T
    L, info = torch.linalg.cholesky_ex(A)
    sol = torch.cholesky_solve(rhs, L) if int(info) == 0 else torch.linalg.lstsq(A, rhs).solution
    return sol.T.to(down_weight.dtype).contiguous()         # [H, k]


def validation_error(down_weight: torch.Tensor, second: torch.Tensor, kept: torch.Tensor,
                     new_down: torch.Tensor) -> float:
    """E|| W a - W_K a_K ||^2 under the second moment C of some text: tr(D C D^T) with
    D = W minus W_K placed in the kept columns (fp64)."""
    D = down_weight.detach().double().clone()
    D[:, kept] -= new_down.double()
    return float(((D @ second.double()) * D).sum())


def choose_ridges(down_weights: Sequence[torch.Tensor], kept: Sequence[torch.Tensor],
                  fit: Sequence[torch.Tensor], held_out: Sequence[torch.Tensor],
                  grid: Sequence[float] = RIDGE_GRID) -> tuple[list[float], list[dict]]:
    """Per layer, the ridge whose refit on the `fit` second moments keeps the layer's output best
    under the `held_out` ones (text of a domain the fit never read): argmin over `grid` of
    validation_error. Returns (ridges, per layer {ridge: relative error}), the errors relative
    to the error of no refit (the kept columns as they are)."""
    ridges, errors = [], []
    for W, k, C_fit, C_held in zip(down_weights, kept, fit, held_out):
        plain = validation_error(W, C_held, k, W.detach()[:, k])
        errs = {r: validation_error(W, C_held, k, compensate(W, C_fit, k, r))
                / max(plain, 1e-30) for r in grid}
        best = min(grid, key=lambda r: (errs[r], r))
        ridges.append(float(best))
        errors.append({f"{r:g}": round(e, 5) for r, e in errs.items()})
    return ridges, errors

"""Parity of an exported model with the PyTorch model it came from.

Every exporter runs `check_parity` after writing its artefact (and the tests run
it too): next-token logits on prompts in several scripts are compared position
by position, plus perplexity on a few evaluation paragraphs. An export that
misses its precision's thresholds raises `ParityError`; the exporter then
removes what it wrote, so no file that looks complete is left behind.

A logits function maps token ids [T] -> logits [T, V] (numpy, float32/64) for
one sequence, each runtime supplying its own; both sides get the same ids, so
tokenization is compared elsewhere (tokenizer tests) and not mixed in here.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

LogitsFn = Callable[[Sequence[int]], np.ndarray]

# Short prompts in several scripts; the eval paragraphs come from the corpus.
PARITY_PROMPTS = [
    "The capital of France is",
    "Die Hauptstadt von Deutschland ist",
    "La capitale de l'Italie est",
    "Столица России —",
    "中国的首都是",
    "日本の首都は",
    "عاصمة مصر هي",
    "भारत की राजधानी",
]


@dataclass(frozen=True)
class Threshold:
    max_abs_diff: float | None     # None: not meaningful for this precision (quantized)
    argmax_agreement: float        # share of positions whose top-1 token agrees, at least
    ppl_ratio: float               # exported / reference perplexity, at most (and >= 1/ratio)


# Measured margins, not wishes: fp32 runtimes agree to ~1e-4 (onnxruntime) and ~3e-2
# (llama.cpp, whose F16 KV cache alone moves logits that much); quantized weights
# move the logits by O(1) and are judged by agreement and perplexity instead.
THRESHOLDS: dict[str, Threshold] = {
    "f32": Threshold(max_abs_diff=0.1, argmax_agreement=0.98, ppl_ratio=1.01),
    "fp32": Threshold(max_abs_diff=1e-2, argmax_agreement=0.99, ppl_ratio=1.005),
    "f16": Threshold(max_abs_diff=1.0, argmax_agreement=0.95, ppl_ratio=1.02),
    "fp16": Threshold(max_abs_diff=1.0, argmax_agreement=0.95, ppl_ratio=1.02),
    "q8_0": Threshold(max_abs_diff=None, argmax_agreement=0.90, ppl_ratio=1.05),
    "int8": Threshold(max_abs_diff=None, argmax_agreement=0.80, ppl_ratio=1.20),
    "q4_k_m": Threshold(max_abs_diff=None, argmax_agreement=0.70, ppl_ratio=1.35),
    "q4_0": Threshold(max_abs_diff=None, argmax_agreement=0.70, ppl_ratio=1.35),
    "int4": Threshold(max_abs_diff=None, argmax_agreement=0.70, ppl_ratio=1.35),
}


class ParityError(RuntimeError):
    """The exported model does not compute what the PyTorch model computes."""


@dataclass
class ParityReport:
    precision: str
    positions: int
    max_abs_diff: float
    mean_abs_diff: float
    argmax_agreement: float
    ppl_reference: float
    ppl_export: float
    passed: bool
    failures: list[str]

    @property
    def ppl_ratio(self) -> float:
        return self.ppl_export / self.ppl_reference

    def to_dict(self) -> dict:
        return {**asdict(self), "ppl_ratio": self.ppl_ratio}

    def summary(self) -> str:
        return (f"parity {self.precision}: max|Δlogit| {self.max_abs_diff:.3g}, "
                f"argmax agreement {self.argmax_agreement:.1%} over {self.positions} positions, "
                f"perplexity {self.ppl_export:.3f} vs {self.ppl_reference:.3f} "
                f"(×{self.ppl_ratio:.4f}) — {'pass' if self.passed else 'FAIL'}")


def _nll(logits: np.ndarray, ids: Sequence[int]) -> tuple[float, int]:
    """Summed NLL of ids[1:] under logits[:-1]."""
    lg = logits[:-1].astype(np.float64)
    m = lg.max(axis=1, keepdims=True)
    logz = m[:, 0] + np.log(np.exp(lg - m).sum(axis=1))
    tgt = np.asarray(ids[1:])
    return float((logz - lg[np.arange(len(tgt)), tgt]).sum()), len(tgt)


def compare(reference: LogitsFn, exported: LogitsFn, prompts: Sequence[Sequence[int]],
            paragraphs: Sequence[Sequence[int]], precision: str,
            vocab: Sequence[int] | None = None) -> ParityReport:
    """Compare two logits functions on token-id sequences; never raises on a mismatch.

    `vocab`: compare only these logit columns (e.g. the kept tokens of a trimmed
    vocabulary, whose ids are mapped by the caller)."""
    if precision not in THRESHOLDS:
        raise ValueError(f"no parity threshold for precision '{precision}'")
    th = THRESHOLDS[precision]
    diffs_max, diffs_sum, n_pos, agree = 0.0, 0.0, 0, 0
    nll_r = nll_e = 0.0
    n_tok = 0
    for ids in list(prompts) + list(paragraphs):
        r = np.asarray(reference(ids), dtype=np.float64)
        e = np.asarray(exported(ids), dtype=np.float64)
        if vocab is not None:
            r, e = r[:, vocab], e[:, vocab]
        if r.shape != e.shape:
            raise ParityError(f"logits shapes differ: reference {r.shape}, export {e.shape}")
        d = np.abs(r - e)
        diffs_max = max(diffs_max, float(d.max()))
        diffs_sum += float(d.mean(axis=1).sum())
        n_pos += len(r)
        agree += int((r.argmax(axis=1) == e.argmax(axis=1)).sum())
        if len(ids) > 1 and vocab is None:
            a, n = _nll(r, ids)
            b, _ = _nll(e, ids)
            nll_r, nll_e, n_tok = nll_r + a, nll_e + b, n_tok + n
    ppl_r = math.exp(nll_r / max(n_tok, 1))
    ppl_e = math.exp(nll_e / max(n_tok, 1))
    failures = []
    if th.max_abs_diff is not None and diffs_max > th.max_abs_diff:
        failures.append(f"max |Δlogit| {diffs_max:.3g} > {th.max_abs_diff}")
    if agree / n_pos < th.argmax_agreement:
        failures.append(f"argmax agreement {agree / n_pos:.1%} < {th.argmax_agreement:.0%}")
    ratio = ppl_e / ppl_r
    if not (1 / th.ppl_ratio <= ratio <= th.ppl_ratio):
        failures.append(f"perplexity ratio {ratio:.4f} outside [1/{th.ppl_ratio}, {th.ppl_ratio}]")
    return ParityReport(precision, n_pos, diffs_max, diffs_sum / n_pos, agree / n_pos, ppl_r,
                        ppl_e, not failures, failures)


def check_parity(*args, **kwargs) -> ParityReport:
    """`compare`, raising ParityError when a threshold is missed."""
    rep = compare(*args, **kwargs)
    if not rep.passed:
        raise ParityError(f"export failed parity ({rep.precision}): " + "; ".join(rep.failures))
    return rep


def torch_logits_fn(model) -> LogitsFn:
    """Reference logits [T, V] of a PyTorch causal LM for one sequence."""
    import torch

    @torch.inference_mode()
    def logits(ids: Sequence[int]) -> np.ndarray:
        dev = next(model.parameters()).device
        out = model(input_ids=torch.tensor([list(ids)], device=dev))
        return out.logits[0].float().cpu().numpy()

    return logits

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

import functools
import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from ..precision import Gate, gate

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


# What parity compares besides the prompts: a few held-out paragraphs (eval split), the
# plan's target languages first, then a spread of scripts; cut to PARAGRAPH_TOKENS.
PARAGRAPH_LANGS = ("en", "de", "fr", "ru", "zh")
N_PARAGRAPHS = 4
PARAGRAPH_TOKENS = 128
LONG_PAST_WINDOW = 32        # the long sequence runs this far past the sliding window
LONG_MIN = 160
DECODE_STEPS = 8             # the last tokens of each sequence go one at a time through the cache


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
    th: Gate = gate(precision)
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


def summary_line(p: dict, extra: str = "") -> str:
    """One human line for an export summary's "parity" section (ParityReport.to_dict() plus
    the prompt and paragraph counts)."""
    return (f"  parity: max|Δlogit| {p['max_abs_diff']:.3g}, argmax {p['argmax_agreement']:.1%} over "
            f"{p['positions']} positions ({p['prompts']} prompts, {p['paragraphs']} paragraphs), "
            f"perplexity ×{p['ppl_ratio']:.4f}{extra} — {'pass' if p['passed'] else 'FAIL'}")


def mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


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


def parity_texts(target_langs: Sequence[str] = (), split: str = "eval",
                 n: int = N_PARAGRAPHS) -> list[str]:
    """A few paragraphs of the built-in corpus's `split`: one long paragraph (among the first
    twenty) per language, the targets first, then PARAGRAPH_LANGS. Parity reads the eval
    split; an export rewrite that needs calibration text (gemma4's V scale) reads the
    profile split. A corpus that cannot be read is an error, not fewer texts."""
    return list(_parity_texts(tuple(target_langs), split, n))


@functools.lru_cache(maxsize=16)
def _parity_texts(langs: tuple[str, ...], split: str, n: int) -> tuple[str, ...]:
    # cached: tests export many models in one process
    from ..corpus import load_corpus

    corpus = load_corpus()
    out = []
    for lang in dict.fromkeys(langs + PARAGRAPH_LANGS):
        if lang not in corpus:
            continue
        texts = corpus.texts(lang, split)
        if texts:
            out.append(max(texts[:20], key=len))
        if len(out) >= n:
            break
    return tuple(out)


def long_length(config) -> int:
    """Tokens of the long parity sequence: past the model's sliding window (Gemma 3: 512), so
    the windowed layers' masking is checked, within its context."""
    window = getattr(config, "sliding_window", None) or 0
    return int(min(max(window + LONG_PAST_WINDOW, LONG_MIN), getattr(config, "max_position_embeddings",
                                                                         4096) - 1))


def long_ids(tokenizer, config, target_langs: Sequence[str] = ()) -> list[int]:
    """One long sequence (BOS + eval paragraphs of the first target language, joined) of
    long_length(config) tokens."""
    from ..corpus import load_corpus

    n = long_length(config)
    corpus = load_corpus()
    lang = next((l for l in list(target_langs) + ["en"] if l in corpus), "en")
    ids: list[int] = []
    texts = corpus.texts(lang, "eval")
    for i in range(0, len(texts), 16):
        ids = list(tokenizer("\n\n".join(texts[:i + 16]), add_special_tokens=True)["input_ids"])
        if len(ids) >= n:
            break
    return ids[:n]


def parity_ids(tokenizer, target_langs: Sequence[str] = (), config=None
               ) -> tuple[list[list[int]], list[list[int]]]:
    """(prompt ids, paragraph ids) for parity, tokenized with the model's own tokenizer;
    paragraphs cut to PARAGRAPH_TOKENS; with the model's `config`, one long sequence past its
    sliding window is added to the paragraphs (last)."""
    enc = lambda t: list(tokenizer(t, add_special_tokens=True)["input_ids"])  # noqa: E731
    prompts = [enc(p) for p in PARITY_PROMPTS]
    paragraphs = [enc(t)[:PARAGRAPH_TOKENS] for t in parity_texts(target_langs)]
    paragraphs = [p for p in paragraphs if len(p) > 1]
    if config is not None:
        paragraphs.append(long_ids(tokenizer, config, target_langs))
    return prompts, paragraphs

"""Per-language perplexity on the corpus's evaluation split.

Scoring unit: each paragraph is one sequence, BOS + tokens, cut at `max_len`
tokens; every token after the first is predicted from its prefix. A language's
perplexity is exp(total NLL / predicted tokens) over its first paragraphs until
`max_tokens` predicted tokens are reached (deterministic: corpus order).
Bits per byte (total NLL / ln 2 / UTF-8 bytes of the scored text) is kept too,
because it compares fairly across different tokenizers.

A scorer is any function list[list[int]] -> list[float] (summed NLL of each
sequence, nats); the PyTorch one is here, the llama.cpp and onnxruntime ones
live with their engines. Tokenizing is the engine's job too, so each stack is
measured end to end.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

from .progress import count_progress

Scorer = Callable[[Sequence[Sequence[int]]], list[float]]
Tokenize = Callable[[str], list[int]]


@dataclass
class LangScore:
    lang: str
    n_texts: int
    n_tokens: int          # predicted tokens
    n_bytes: int           # UTF-8 bytes of the scored paragraphs
    nll: float             # summed negative log-likelihood, nats

    @property
    def ppl(self) -> float:
        return math.exp(self.nll / max(self.n_tokens, 1))

    @property
    def bits_per_byte(self) -> float:
        return self.nll / math.log(2) / max(self.n_bytes, 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "ppl": self.ppl, "bits_per_byte": self.bits_per_byte}


def select_sequences(texts: Sequence[str], tokenize: Tokenize, max_tokens: int,
                     max_len: int) -> tuple[list[list[int]], int]:
    """Tokenized paragraphs (cut at max_len) until max_tokens predicted tokens; and their bytes."""
    seqs, n_pred, n_bytes = [], 0, 0
    for text in texts:
        ids = tokenize(text)
        if len(ids) < 2:
            continue
        if len(ids) > max_len:
            ids = ids[:max_len]
            # bytes of the part actually scored are unknown once cut; count the whole
            # paragraph proportionally to the tokens kept
            n_bytes += int(len(text.encode()) * max_len / len(tokenize(text)))
        else:
            n_bytes += len(text.encode())
        seqs.append(ids)
        n_pred += len(ids) - 1
        if n_pred >= max_tokens:
            break
    return seqs, n_bytes


def score_language(lang: str, texts: Sequence[str], tokenize: Tokenize, scorer: Scorer,
                   max_tokens: int = 4096, max_len: int = 512, batch_size: int = 8,
                   advance: Callable[[int], None] | None = None) -> LangScore:
    seqs, n_bytes = select_sequences(texts, tokenize, max_tokens, max_len)
    if not seqs:
        raise ValueError(f"no scorable text for language '{lang}'")
    nll = 0.0
    # sort by length so batches carry little padding; the sum does not depend on order
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for start in range(0, len(order), batch_size):
        batch = [seqs[i] for i in order[start:start + batch_size]]
        nll += sum(scorer(batch))
        if advance:
            advance(sum(len(s) - 1 for s in batch))
    return LangScore(lang, len(seqs), sum(len(s) - 1 for s in seqs), n_bytes, nll)


def evaluate_languages(langs: Sequence[str], texts_for: Callable[[str], Sequence[str]],
                       tokenize: Tokenize, scorer: Scorer, max_tokens: int = 4096,
                       max_len: int = 512, batch_size: int = 8,
                       label: str = "scoring") -> list[LangScore]:
    results = []
    with count_progress(label, total=max_tokens * len(langs), unit="tokens") as advance:
        for lang in langs:
            before = [0]

            def adv(n: int, lang=lang) -> None:
                before[0] += n
                advance(n, extra=lang)

            res = score_language(lang, texts_for(lang), tokenize, scorer, max_tokens, max_len,
                                 batch_size, adv)
            advance(max(0, max_tokens - before[0]))   # languages with less text finish early
            results.append(res)
    return results


# ---------------------------------------------------------------- PyTorch scorer

def logits_from_hidden(model, hidden):
    """LM-head logits for hidden states [.., hidden] -> [.., vocab], with the
    family's final soft-capping where it has one (Gemma 2)."""
    import torch

    logits = model.lm_head(hidden)
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def torch_scorer(model, pad_id: int = 0, chunk: int = 256) -> Scorer:
    """Summed NLL per sequence with a PyTorch causal LM.

    The decoder runs once on the padded batch; logits are then built `chunk`
    positions at a time, because [batch, seq, 262k-vocab] fp32 logits would need
    gigabytes.
    """
    import torch

    decoder = model.get_decoder()

    @torch.inference_mode()
    def score(batch: Sequence[Sequence[int]]) -> list[float]:
        n = max(len(s) for s in batch)
        ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        for i, s in enumerate(batch):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        dev = next(model.parameters()).device
        hidden = decoder(input_ids=ids.to(dev), attention_mask=mask.to(dev)).last_hidden_state
        # position t predicts token t+1; padding positions are masked out
        h = hidden[:, :-1]                                   # [B, n-1, H]
        target = ids[:, 1:].to(dev)                          # [B, n-1]
        valid = mask[:, 1:].to(dev).bool()
        sums = torch.zeros(len(batch), dtype=torch.float64, device=dev)
        for t0 in range(0, n - 1, chunk):
            lg = logits_from_hidden(model, h[:, t0:t0 + chunk]).float()   # [B, c, V]
            lp = torch.log_softmax(lg, dim=-1)
            tok_nll = -lp.gather(-1, target[:, t0:t0 + chunk, None])[..., 0]
            sums += (tok_nll * valid[:, t0:t0 + chunk]).sum(dim=1).double()
        return sums.tolist()

    return score


def hf_tokenize(tokenizer) -> Tokenize:
    return lambda text: tokenizer(text, add_special_tokens=True)["input_ids"]

"""Recording: read the neurons at every FFN's down-projection input and reduce them to counts
inside the hook (no activation is ever cached); token sequences and padded batches."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import torch

from ..experts import ExpertMap
from ..models.adapters import ffn_layers
from ..models.loader import input_device
from .data import LangStats, top_k_for

@contextlib.contextmanager
def read_neurons(model, reduce: Callable[[int, torch.Tensor], None]) -> Iterator[None]:
    """Call reduce(layer, a) with a: [B, T, F] at every FFN's down-projection input.

    The hook returns None, so the down projection sees its input unchanged
    (reduce must not write to `a`). Hooks are removed even when the forward fails.
    """
    handles = []
    try:
        for v in ffn_layers(model):
            handles.append(v.down.register_forward_pre_hook(
                lambda module, args, i=v.index: reduce(i, args[0])))
        yield
    finally:
        for h in handles:
            h.remove()


@dataclass
class Batch:
    ids: torch.Tensor          # [B, T] int64, right-padded
    mask: torch.Tensor         # [B, T] int64 attention mask
    rows: torch.Tensor         # [N] flat indices (b * T + t) of the counted positions
    n_tokens: int              # N


def make_batches(seqs: Sequence[Sequence[int]], batch_size: int, pad_id: int,
                 special_ids: set[int]) -> list[Batch]:
    """Sequences sorted by length (little padding) and cut into batches of `batch_size`."""
    order = sorted(range(len(seqs)), key=lambda i: (len(seqs[i]), i))
    batches = []
    for s in range(0, len(order), batch_size):
        chunk = [seqs[i] for i in order[s:s + batch_size]]
        n = max(len(q) for q in chunk)
        ids = torch.full((len(chunk), n), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), n), dtype=torch.long)
        counted = torch.zeros((len(chunk), n), dtype=torch.bool)
        for b, q in enumerate(chunk):
            ids[b, :len(q)] = torch.tensor(q, dtype=torch.long)
            mask[b, :len(q)] = 1
            counted[b, :len(q)] = torch.tensor([t not in special_ids for t in q])
        rows = counted.reshape(-1).nonzero().squeeze(1)
        batches.append(Batch(ids, mask, rows, int(rows.numel())))
    return batches


def iter_sequences(texts: Sequence[str], tokenize: Callable[[str], list[int]], n_tokens: int,
                   max_len: int, special_ids: set[int]) -> Iterator[list[int]]:
    """Token sequences of the texts, in order, until exactly n_tokens counted tokens
    (fewer if the text runs out).

    A paragraph longer than max_len is cut into pieces of max_len, each starting
    again with the paragraph's leading special tokens (BOS), so no text is lost
    to the length limit. The last piece is cut so the total is exact. A generator,
    so memory does not grow with n_tokens.
    """
    total = 0
    for text in texts:
        ids = tokenize(text)
        lead = 0
        while lead < len(ids) and ids[lead] in special_ids:
            lead += 1
        prefix, body = ids[:lead], ids[lead:]
        step = max(1, max_len - len(prefix))
        for s in range(0, len(body), step):
            piece = body[s:s + step][:n_tokens - total]
            if piece:
                total += sum(t not in special_ids for t in piece)
                yield prefix + piece
            if total >= n_tokens:
                return


def take_sequences(texts: Sequence[str], tokenize: Callable[[str], list[int]], n_tokens: int,
                     max_len: int, special_ids: set[int]) -> tuple[list[list[int]], int]:
    """iter_sequences as a list, with the counted tokens."""
    seqs = list(iter_sequences(texts, tokenize, n_tokens, max_len, special_ids))
    return seqs, _count(seqs, special_ids)


def iter_batches(seqs: Iterable[Sequence[int]], batch_size: int, pad_id: int,
                 special_ids: set[int], window: int = 4096) -> Iterator[Batch]:
    """make_batches over consecutive windows of `window` sequences: length-sorted within a
    window (little padding), bounded memory whatever the number of sequences."""
    buf: list[Sequence[int]] = []
    for q in seqs:
        buf.append(q)
        if len(buf) == window:
            yield from make_batches(buf, batch_size, pad_id, special_ids)
            buf = []
    if buf:
        yield from make_batches(buf, batch_size, pad_id, special_ids)


def _count(seqs: Iterable[Sequence[int]], special_ids: set[int]) -> int:
    return sum(sum(t not in special_ids for t in q) for q in seqs)


def _stats_reducer(stats: LangStats, rows_of_batch: list, maps: tuple[list, list],
                   ks: tuple[list, list]) -> Callable[[int, torch.Tensor], None]:
    """The hook body: fold one layer's activations of one batch into `stats`."""
    onehots, base_onehots = maps
    k_exp, k_base = ks

    def reduce(i: int, a: torch.Tensor) -> None:
        f = a.shape[-1]
        # copy only the counted positions (index_select copies, so abs_ never touches `a`)
        rows = rows_of_batch[0]
        # (under a device map a layer's activations live on its own GPU: bring the counted
        # rows to the statistics' device)
        x = a.reshape(-1, f).index_select(0, rows.to(a.device)).to(rows.device).float().abs_()  # [N, F]
        for onehot, k, counts in ((onehots[i], k_exp[i], stats.expert_count[i]),
                                  (base_onehots[i], k_base[i], stats.baseline_count[i])):
            mass = x @ onehot                                              # [N, E]
            top = mass.topk(k, dim=1, sorted=False).indices                 # [N, k]
            counts += torch.bincount(top.reshape(-1), minlength=onehot.shape[1])
        stats.neuron_count[i] += (x > x.mean(1, keepdim=True)).sum(0)      # [F]
        stats.neuron_mass[i] += x.sum(0, dtype=torch.float64)              # [F]

    return reduce


def _forward(decoder, batch: Batch, device) -> None:
    decoder(input_ids=batch.ids.to(device), attention_mask=batch.mask.to(device), use_cache=False)


@torch.inference_mode()
def record_language(model, batches: Iterable[Batch], emap: ExpertMap, baseline: ExpertMap,
                    top_k_share: float, advance: Callable[[int], None] | None = None) -> LangStats:
    """Run the decoder over `batches` and reduce every FFN's activations to LangStats."""
    device = input_device(model)
    stats = LangStats.zeros(emap, baseline, device)
    maps = ([emap.one_hot(i).to(device) for i in range(emap.n_layers)],
            [baseline.one_hot(i).to(device) for i in range(baseline.n_layers)])
    ks = ([top_k_for(emap.n_experts(i), top_k_share) for i in range(emap.n_layers)],
          [top_k_for(baseline.n_experts(i), top_k_share) for i in range(baseline.n_layers)])
    rows = [None]                       # the current batch's counted positions, read by the hook
    decoder = model.get_decoder()
    with read_neurons(model, _stats_reducer(stats, rows, maps, ks)):
        for b in batches:
            rows[0] = b.rows.to(device)
            _forward(decoder, b, device)
            stats.tokens += b.n_tokens
            if advance:
                advance(b.n_tokens)
    return stats.to("cpu")


@torch.inference_mode()
def record_coactivation(model, batches: Sequence[Batch], widths: Sequence[int]) -> list[torch.Tensor]:
    """Per layer [F, F] float64: tokens on which neurons i and j both fired (fires = above the
    token's mean |a|, as in the profile). Costs N * F^2 per layer: use a few thousand tokens."""
    device = input_device(model)
    coact = [torch.zeros(w, w, dtype=torch.float64, device=device) for w in widths]
    rows = [None]

    def reduce(i: int, a: torch.Tensor) -> None:
        x = a.reshape(-1, a.shape[-1]).index_select(0, rows[0].to(a.device)).to(rows[0].device).float().abs_()
        fired = (x > x.mean(1, keepdim=True)).float()                     # [N, F]
        coact[i] += (fired.T @ fired).double()                              # [F, F]

    decoder = model.get_decoder()
    with read_neurons(model, reduce):
        for b in batches:
            rows[0] = b.rows.to(device)
            _forward(decoder, b, device)
    return [c.cpu() for c in coact]

"""End-to-end distillation: the pruned model's next-token distribution towards the dense one's.

The teacher's distribution is computed once and cached as its top-k tokens per position
(log-probabilities over the student's vocabulary: the kept tokens when the vocabulary is
trimmed). Each step, the student's logits are computed only for the tokens that are in
some position's teacher top-k in the batch (the candidate set C; a 262k-row head is the
most expensive part of a small multilingual model), both distributions are renormalised
over C, and the loss is KL(teacher || student) over C, averaged over positions. What
trains (`train`): the kept FFN weights (default), or every decoder weight — attention and
norms too — but never the embedding and output head.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..evaluate import HEAD_CHUNK, logits_from_hidden
from ..models.adapters import ffn_layers


@dataclass
class TeacherTopK:
    ids: torch.Tensor        # [S, T-1, k] student-vocabulary ids of the teacher's top-k tokens
    logp: torch.Tensor       # [S, T-1, k] their teacher log-probabilities (full softmax)


@torch.inference_mode()
def teacher_topk(dense, ids: torch.Tensor, k: int, kept: list[int] | None = None, batch: int = 4,
                 progress: Callable[[int], None] | None = None, chunk: int = HEAD_CHUNK) -> TeacherTopK:
    """Top-k next-token log-probabilities of the dense model at every position but the last.
    With `kept` (a trimmed vocabulary's old ids), the teacher's distribution is restricted
    and renormalised to the kept tokens, and the ids are the student's (positions in kept)."""
    dev = next(dense.parameters()).device
    cols = None if kept is None else torch.as_tensor(kept, dtype=torch.long, device=dev)
    out_ids, out_lp = [], []
    for s in range(0, len(ids), batch):
        h = dense.get_decoder()(input_ids=ids[s:s + batch].to(dev), use_cache=False).last_hidden_state
        B, T1 = h.shape[0], h.shape[1] - 1
        flat = h[:, :-1].reshape(B * T1, -1)
        vals, idx = [], []
        for c in range(0, len(flat), chunk):            # `chunk` positions per head call
            lg = logits_from_hidden(dense, flat[c:c + chunk]).float()
            if cols is not None:
                lg = lg[:, cols]
            top = lg.topk(k, dim=-1)
            vals.append(top.values - torch.logsumexp(lg, -1, keepdim=True))
            idx.append(top.indices)
        out_ids.append(torch.cat(idx).view(B, T1, k).cpu())
        out_lp.append(torch.cat(vals).view(B, T1, k).cpu())
        if progress:
            progress(int(ids[s:s + batch].numel()))
    return TeacherTopK(torch.cat(out_ids), torch.cat(out_lp))


def candidate_kl(student, ids: torch.Tensor, top: TeacherTopK,
                 cand: torch.Tensor | None = None) -> torch.Tensor:
    """KL(teacher || student) over the candidate set, mean over positions.
    ids [B, T] student ids; top.ids/logp [B, T-1, k]; cand: the candidate token ids (sorted;
    default: the union of this batch's teacher top-k — pass the whole step's union when the
    step is split over processes)."""
    dev = next(student.parameters()).device
    h = student.get_decoder()(input_ids=ids.to(dev), use_cache=False).last_hidden_state[:, :-1]
    if cand is None:
        cand, inv = torch.unique(top.ids.to(dev), return_inverse=True)      # C, [B, T-1, k]
    else:
        cand = cand.to(dev)
        inv = torch.searchsorted(cand, top.ids.to(dev))
    head = student.get_output_embeddings()
    lg = h @ head.weight[cand].T                                              # [B, T-1, C]
    if getattr(head, "bias", None) is not None:
        lg = lg + head.bias[cand]
    cap = getattr(student.config, "final_logit_softcapping", None)
    if cap:
        lg = torch.tanh(lg / cap) * cap
    logq = torch.log_softmax(lg.float(), -1).gather(-1, inv)                  # [B, T-1, k]
    # the teacher over C: its top-k renormalised, tokens of C outside a position's top-k
    # count as zero (their mass is what the top-k leaves out, spread thinly)
    logp = torch.log_softmax(top.logp.to(dev), -1)
    p = logp.exp()
    return (p * (logp - logq)).sum(-1).mean()


def trained_params(student, which: str = "ffn") -> list[torch.nn.Parameter]:
    """The weights distillation trains: the kept FFN weights ("ffn"), or every parameter of the
    decoder but the token embedding ("all"; the output head is left too, tied or not)."""
    if which == "ffn":
        return [p for v in ffn_layers(student) for lin in (v.gate, v.up, v.down) for p in lin.parameters()]
    frozen = {id(p) for m in (student.get_input_embeddings(), student.get_output_embeddings())
              if m is not None for p in m.parameters()}
    return [p for p in student.get_decoder().parameters() if id(p) not in frozen]


def distill(student, ids: torch.Tensor, top: TeacherTopK, *, steps: int, lr: float, batch: int,
            seed: int, train: str = "ffn", deadline: float | None = None,
            on_step: Callable[[int, float], None] | None = None,
            should_stop: Callable[[], bool] | None = None,
            resume: dict | None = None, checkpoint_every: int = 25,
            on_checkpoint: Callable[[dict], None] | None = None) -> dict:
    """Adam on the `train` weights (trained_params) for `steps` steps of `batch` sequences
    (cycled in a seeded order). Under torchrun each process takes its share of every step's
    sequences and the gradients are summed (losses weighted by share), so the steps are those
    of one process. Every `checkpoint_every` steps `on_checkpoint` gets the state (weights,
    optimizer, step, losses); `resume` (such a state) continues from it to the same weights
    as an uninterrupted run. Returns the record: first and last losses, steps run."""
    import time

    from .. import distributed as dd

    probe = torch.arange(min(len(ids), 8))                  # a fixed slice to report progress on

    def probe_kl() -> float:
        with torch.no_grad():
            return float(candidate_kl(student, ids[probe], TeacherTopK(top.ids[probe], top.logp[probe])))

    params = trained_params(student, train)
    names = {id(p): n for n, p in student.named_parameters()}
    names = [names[id(p)] for p in params]
    # only the trained weights take gradients: a loaded model has requires_grad everywhere, and
    # the embedding's gradient alone (vocabulary x hidden, dense) would cost more than the step
    flags = {p: p.requires_grad for p in student.parameters()}
    student.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(ids), generator=g)
    first = 0
    if resume is not None:
        with torch.no_grad():
            for n, p in zip(names, params):
                p.copy_(resume["weights"][n])
        opt.load_state_dict(resume["optimizer"])
        first, losses, kl_before = resume["step"], list(resume["losses"]), resume["kl_probe_before"]
    else:
        losses, kl_before = [], probe_kl()
    student.train(False)
    try:
        for step in range(first, steps):
            if (should_stop is not None and should_stop()) or \
                    (deadline is not None and time.perf_counter() > deadline):
                break
            pick = order[(step * batch) % len(ids):][:batch]
            if len(pick) < batch:
                pick = torch.cat([pick, order[:batch - len(pick)]])
            mine = pick[dd.rank()::dd.world()]
            cand = torch.unique(top.ids[pick])                   # the whole step's candidates
            opt.zero_grad(set_to_none=True)
            part = torch.zeros(1, dtype=torch.float64)
            if len(mine):
                loss = candidate_kl(student, ids[mine], TeacherTopK(top.ids[mine], top.logp[mine]),
                                    cand)
                (loss * (len(mine) / len(pick))).backward()
                part[0] = loss.item() * len(mine) / len(pick)
            if dd.active():
                dd.all_reduce_([p.grad if p.grad is not None else p.new_zeros(p.shape)
                                for p in params] + [part])
            opt.step()
            losses.append(float(part[0]))
            if on_step:
                on_step(step, losses[-1])
            if on_checkpoint is not None and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
                on_checkpoint({"step": step + 1, "losses": list(losses), "kl_probe_before": kl_before,
                               "weights": {n: p.detach().clone() for n, p in zip(names, params)},
                               "optimizer": opt.state_dict()})
    finally:
        for p, f in flags.items():
            p.requires_grad_(f)
    return {"steps": len(losses), "resumed_from_step": first or None, "train": train,
            "kl_probe_before": kl_before, "kl_probe_after": probe_kl(),
            "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None,
            "loss_last10_mean": sum(losses[-10:]) / len(losses[-10:]) if losses else None}

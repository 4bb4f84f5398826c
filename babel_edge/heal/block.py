"""Block reconstruction: train each pruned FFN, layer by layer and in order, on the hidden
states its own (already healed) layers 0..l-1 produce — not the dense ones — so that each
FFN learns to work on the inputs it will really see ("A Free Lunch in LLM Compression",
2025: refitting whole MLPs, nonlinearity included, beats single-matrix refits, whose errors
accumulate). Only the kept gate/up/down weights change; attention and norms stay.

Two targets (HealOptions.target):
  mlp    (default) what the dense FFN — post-FFN norm included — makes of the same input X
  block  the dense residual stream after the layer (also corrects inherited error, but a
         post-FFN norm, as in Gemma, bounds what an FFN can add, and the deep layers then
         chase an unreachable target: measured worse on unseen text)

    dense pass (once)        inputs of every decoder layer (position embeddings, masks) and
                             the dense residual after every layer            [L+1] x [S, T, H]
    for l in 0..L-1:         run student layer l on h_l: capture R (residual entering the FFN)
                             and X (FFN input); target Y (above);
                             Adam on  |post_norm(mlp(X)) - Y|^2 / mean(Y^2)  over minibatches
                             of tokens; keep the epoch with the lowest held-out loss;
                             h_{l+1} = R + post_norm(mlp(X))
Memory is (L + 4) x tokens x hidden floats (Gemma 3 270M, 64k tokens: ~3.6 GB).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from ..models.adapters import decoder_layers, ffn_layers


@dataclass
class DensePass:
    """What the dense model computed on this process's training sequences (all of them in
    one process; under torchrun, the batches b with b mod world == rank, in order)."""
    layer_calls: list[list[tuple[tuple, dict]]]   # [layer][batch]: (args, kwargs) but the hidden
                                                  # states (masks differ by layer type)
    inputs: torch.Tensor                    # [S_local, T, H] the residual entering layer 0
    outputs: list[torch.Tensor]             # per layer [S_local, T, H] the residual after it
    batch: int
    n_seqs: int = 0                         # S: sequences over all processes
    seq_len: int = 0                        # T

    def local_token(self, g: torch.Tensor, first_seq: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask, local index) of global token ids g (token t of global sequence
        first_seq + g // T): which are this process's, and where they are in its tensors
        flattened to [S_local * T, H]."""
        from .. import distributed as dd

        T, w, r = self.seq_len, dd.world(), dd.rank()
        s = first_seq + g // T
        b = s // self.batch
        mine = b % w == r
        local_seq = (b // w) * self.batch + s % self.batch
        return mine, (local_seq * T + g % T)[mine]


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


@torch.inference_mode()
def dense_pass(model, ids: torch.Tensor, batch: int = 8,
               progress: Callable[[int], None] | None = None) -> DensePass:
    """Run the dense model over `ids` [S, T] once; record every layer's calling context and
    output. The calling context (position embeddings, masks) depends on the ids only, so the
    student's layers can be called with it directly."""
    layers = decoder_layers(model)
    calls: list = [[] for _ in layers]
    outputs = [[] for _ in layers]
    inputs = []

    def pre(i):
        def hook(_mod, args, kwargs):
            if i == 0:
                hidden = args[0] if args else kwargs["hidden_states"]
                inputs.append(hidden.detach().float().cpu())
            rest = {k: v for k, v in kwargs.items() if k != "hidden_states"}
            calls[i].append((tuple(args[1:]), rest))
        return hook

    def post(i):
        def hook(_mod, _args, out):
            outputs[i].append(_first(out).detach().float().cpu())
        return hook

    hooks = [l.register_forward_pre_hook(pre(i), with_kwargs=True) for i, l in enumerate(layers)]
    hooks += [l.register_forward_hook(post(i)) for i, l in enumerate(layers)]
    from .. import distributed as dd

    dev = next(model.parameters()).device
    try:
        for b, s in enumerate(range(0, len(ids), batch)):
            if b % dd.world() != dd.rank():          # this process's share of the batches
                continue
            model.get_decoder()(input_ids=ids[s:s + batch].to(dev), use_cache=False)
            if progress:
                progress(int(ids[s:s + batch].numel()) * dd.world())
    finally:
        for h in hooks:
            h.remove()
    return DensePass(calls, torch.cat(inputs), [torch.cat(o) for o in outputs], batch,
                     n_seqs=len(ids), seq_len=int(ids.shape[1]))


def _call(layer, hidden, call):
    args, kwargs = call
    return _first(layer(hidden.to(next(layer.parameters()).device), *args, **kwargs))


@torch.no_grad()
def ffn_inputs(view, hidden: torch.Tensor, dense: DensePass) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, X): the residual entering the FFN and the FFN's input, when the student's layer
    runs on `hidden` [S, T, H]."""
    got: dict[str, list] = {"R": [], "X": []}
    hooks = [view.pre_norm.register_forward_pre_hook(lambda m, a: got["R"].append(a[0].float().cpu())),
             view.mlp.register_forward_pre_hook(lambda m, a: got["X"].append(a[0].float().cpu()))]
    try:
        for b, s in enumerate(range(0, len(hidden), dense.batch)):
            _call(view.layer, hidden[s:s + dense.batch], dense.layer_calls[view.index][b])
    finally:
        for h in hooks:
            h.remove()
    return torch.cat(got["R"]), torch.cat(got["X"])


@torch.no_grad()
def block_out(view, R: torch.Tensor, X: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    dev = next(view.mlp.parameters()).device
    return torch.cat([view.block_output(R[s:s + chunk].to(dev), X[s:s + chunk].to(dev)).float().cpu()
                      for s in range(0, len(R), chunk)])


def _params(view) -> list[torch.nn.Parameter]:
    return [p for lin in (view.gate, view.up, view.down) for p in lin.parameters()]


def _sq_err(view, X: torch.Tensor, Y: torch.Tensor, inv_scale: torch.Tensor) -> torch.Tensor:
    """Summed squared error of post_norm(mlp(X)) against Y, each output dimension divided by
    its mean square (inv_scale [H]): every dimension weighs the same, so the few dimensions
    with massive values (Gemma's outlier features) cannot take the whole fit."""
    y = view.mlp(X)
    if view.post_norm is not None:
        y = view.post_norm(y)
    return (((y - Y) ** 2) * inv_scale).sum()


@torch.no_grad()
def _err_over(view, X, Y, idx: torch.Tensor, inv_scale, chunk: int = 4096) -> tuple[float, int]:
    """(summed scaled squared error, values) over local rows idx, added up across processes."""
    from .. import distributed as dd

    tot = torch.zeros(2, dtype=torch.float64)
    for s in range(0, len(idx), chunk):
        j = idx[s:s + chunk]
        tot[0] += float(_sq_err(view, X[j], Y[j], inv_scale))
        tot[1] += len(j) * X.shape[-1]
    dd.all_reduce_([tot])
    return float(tot[0]), int(tot[1])


def train_layer(view, X: torch.Tensor, Y: torch.Tensor, dense: DensePass, *, epochs: int,
                lr: float, batch_tokens: int, holdout: float, seed: int,
                deadline: float | None = None,
                on_step: Callable[[float], None] | None = None) -> dict:
    """Adam on one layer's kept FFN weights; X, Y [S_local * T, H] (this process's tokens).

    The first `holdout` share of the sequences (over all processes) is held out; the rest is
    shuffled by a seeded permutation of global token ids and cut into steps of
    `batch_tokens`. Each process computes the loss of its tokens of the step, normalised by
    the step's global size, and the gradients are summed across processes — so N processes
    take exactly the steps one process takes (up to float summation order). The weights of
    the best epoch (lowest held-out loss, the start included) are kept. Returns the record."""
    import time as _time

    from .. import distributed as dd

    dev = next(view.mlp.parameters()).device
    X, Y = X.to(dev), Y.to(dev)
    T = dense.seq_len
    n_hold = int(dense.n_seqs * holdout)
    n_train = (dense.n_seqs - n_hold) * T
    _, hold_idx = dense.local_token(torch.arange(n_hold * T))
    if n_hold == 0:
        _, hold_idx = dense.local_token(torch.arange(n_train))
    _, train_idx = dense.local_token(torch.arange(n_train), first_seq=n_hold)
    hold_idx, train_idx = hold_idx.to(dev), train_idx.to(dev)
    # per output dimension: its mean square over the training tokens (all processes)
    sq = torch.zeros(Y.shape[-1] + 1, dtype=torch.float64)
    sq[:-1] = (Y[train_idx].double() ** 2).sum(0)
    sq[-1] = train_idx.numel()
    dd.all_reduce_([sq])
    ms = sq[:-1] / max(float(sq[-1]), 1.0)
    inv_scale = (1.0 / ms.clamp_min(1e-6 * float(ms.mean()) + 1e-30)).float().to(dev)
    scale = 1.0
    params = _params(view)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(seed)

    def held_out() -> float:
        e, n = _err_over(view, X, Y, hold_idx, inv_scale)
        return e / max(n, 1) / scale

    best = before = held_out()
    best_state = [p.detach().clone() for p in params]
    steps, done = 0, 0
    try:
        for epoch in range(epochs):
            order = torch.randperm(n_train, generator=g)
            for s in range(0, n_train, batch_tokens):
                chunk = order[s:s + batch_tokens]
                _, idx = dense.local_token(chunk, first_seq=n_hold)
                idx = idx.to(dev)
                loss = _sq_err(view, X[idx], Y[idx], inv_scale) / (len(chunk) * Y.shape[-1] * scale)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if dd.active():
                    dd.all_reduce_([p.grad if p.grad is not None else torch.zeros_like(p)
                                    for p in params])
                opt.step()
                steps += 1
                if on_step:
                    on_step(loss.item() * dd.world())
            done = epoch + 1
            val = held_out()
            if val < best:
                best, best_state = val, [p.detach().clone() for p in params]
            stop = torch.tensor([deadline is not None and _time.perf_counter() > deadline],
                                dtype=torch.long)
            dd.all_reduce_([stop], op="max")               # every process stops together
            if int(stop):
                break
    finally:
        with torch.no_grad():
            for p, b in zip(params, best_state):
                p.copy_(b)
        for p in params:
            p.requires_grad_(False)
    return {"held_out_rel_error_before": before, "held_out_rel_error_after": best,
            "epochs": done, "steps": steps}


@torch.no_grad()
def dense_ffn_out(dense_view, X: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """What the dense model's FFN (post-norm included) makes of the student's FFN input X."""
    dev = next(dense_view.mlp.parameters()).device
    out = []
    for s in range(0, len(X), chunk):
        y = dense_view.mlp(X[s:s + chunk].to(dev))
        if dense_view.post_norm is not None:
            y = dense_view.post_norm(y)
        out.append(y.float().cpu())
    return torch.cat(out)


TARGETS = ("mlp", "block")


def reconstruct(student, dense: DensePass, *, epochs: int, lr: float, batch_tokens: int,
                holdout: float, seed: int, start_layer: int = 0, target: str = "mlp",
                dense_model=None,
                hidden: torch.Tensor | None = None, deadline: float | None = None,
                on_layer: Callable[[int, dict, torch.Tensor], None] | None = None,
                on_step: Callable[[int, float], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> list[dict]:
    """Heal every FFN from `start_layer` on (layers before it are taken as already healed;
    `hidden` is then the residual entering `start_layer`). target "mlp": the FFN reproduces
    what the dense FFN makes of the same (student) input; "block": the layer's output
    reproduces the dense residual stream (needs no dense FFN, but cannot be met through a
    post-FFN norm when the inherited error is large). on_layer(l, record, hidden_after) is
    called after each layer (checkpointing); returns the per-layer records."""
    if target not in TARGETS:
        raise ValueError(f"unknown healing target '{target}'")
    views = ffn_layers(student)
    dense_views = ffn_layers(dense_model) if dense_model is not None else None
    if target == "mlp" and dense_views is None:
        raise ValueError("the 'mlp' target needs the dense model")
    h = dense.inputs if hidden is None else hidden
    records = []
    n_left = len(views) - start_layer
    for l in range(start_layer, len(views)):
        if should_stop is not None and should_stop():
            break
        v = views[l]
        t0 = time.perf_counter()
        R, X = ffn_inputs(v, h, dense)
        H = R.shape[-1]
        if target == "mlp":                       # the dense FFN on the same input
            Y = dense_ffn_out(dense_views[l], X)
        else:                                     # what post_norm(mlp(X)) should add
            Y = dense.outputs[l] - R
        layer_deadline = None
        if deadline is not None:                  # share what is left equally
            layer_deadline = t0 + max(0.0, deadline - t0) / max(1, n_left - (l - start_layer))
        rec = train_layer(v, X.reshape(-1, H), Y.reshape(-1, H), dense, epochs=epochs, lr=lr,
                          batch_tokens=batch_tokens, holdout=holdout, seed=seed + l,
                          deadline=layer_deadline,
                          on_step=(lambda loss, l=l: on_step(l, loss)) if on_step else None)
        h = block_out(v, R, X)
        rec.update(layer=l, seconds=round(time.perf_counter() - t0, 2))
        records.append(rec)
        if on_layer:
            on_layer(l, rec, h)
    return records


@torch.no_grad()
def run_layers(student, dense: DensePass, upto: int) -> torch.Tensor:
    """The residual entering layer `upto` when the student's layers 0..upto-1 run (resume)."""
    layers = decoder_layers(student)
    h = dense.inputs
    for l in range(upto):
        h = torch.cat([_call(layers[l], h[s:s + dense.batch], dense.layer_calls[l][b]).float().cpu()
                       for b, s in enumerate(range(0, len(h), dense.batch))])
    return h

"""Healing end to end: dense pass → block reconstruction → (distillation) → a pruned directory.

    heal_loaded(dense_model, student_model, text, options)  # in memory; returns the record
    heal(pruned_dir, out_dir, options=...)                  # what `babel-edge heal` does

Checkpoints: after every healed layer the healed FFN weights, and every 25 distillation
steps the trained weights and the optimizer's state, go with the progress to
`<out>.heal-partial/checkpoint.pt`; a rerun with the same
model, text and settings continues from there and ends with the same weights as an
uninterrupted run (the dense pass is recomputed, it is deterministic; a checkpoint taken
during distillation needs neither the dense pass nor the blocks). The partial folder
is removed once the healed directory is complete.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..errors import UserError
from ..models.adapters import ffn_layers
from ..provenance import now_utc
from . import block, distill
from .data import TrainingText
from .options import HealOptions

Progress = Callable[[str, int, int, str], None]     # (stage, done, total, extra)


class Cancelled(Exception):
    pass


# ------------------------------------------------------------------ checkpoints

def _ckpt_key(student, text: TrainingText, o: HealOptions) -> dict:
    return {"widths": [v.width for v in ffn_layers(student)], "text": text.digest,
            "epochs": o.epochs, "target": o.target, "lr": o.lr, "batch_tokens": o.batch_tokens, "seed": o.seed,
            "holdout": o.holdout, "distill_steps": o.distill_steps, "distill_lr": o.distill_lr,
            "distill_batch": o.distill_batch, "top_k": o.top_k, "distill_params": o.distill_params}


def _ffn_state(student, layers: Sequence[int]) -> dict:
    views = ffn_layers(student)
    return {l: {n: getattr(views[l], n).weight.detach().clone() for n in ("gate", "up", "down")}
            for l in layers}


def _load_ffn_state(student, state: dict) -> None:
    views = ffn_layers(student)
    with torch.no_grad():
        for l, ws in state.items():
            for n, w in ws.items():
                getattr(views[int(l)], n).weight.copy_(w)


def save_checkpoint(path: Path, payload: dict) -> None:
    from ..io import atomic_file

    with atomic_file(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path | None, key: dict) -> dict | None:
    if path is None or not path.exists():
        return None
    try:
        ck = torch.load(path, weights_only=False)
    except Exception:  # noqa: BLE001 - a damaged checkpoint is ignored and the run starts over
        return None
    return ck if ck.get("key") == key else None


# ------------------------------------------------------------------ in memory

def heal_loaded(dense, student, text: TrainingText, options: HealOptions = HealOptions(), *,
                kept: list[int] | None = None, checkpoint: Path | None = None,
                progress: Progress | None = None, cancel: threading.Event | None = None) -> dict:
    """Heal `student` (a pruned copy of `dense`, changed in place) on `text`. Returns the
    record the plan keeps under "healing"."""
    from .. import distributed as dd

    o = options.validate()
    if o.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: PyTorch sees no CUDA GPU here; use --device cpu")
    old_threads = torch.get_num_threads()
    if o.threads:
        torch.set_num_threads(o.threads)
    t0 = time.perf_counter()
    deadline = None if o.budget_minutes is None else t0 + 60 * o.budget_minutes
    stop = (lambda: cancel.is_set()) if cancel is not None else (lambda: False)
    key = _ckpt_key(student, text, o)
    ck = load_checkpoint(checkpoint, key)
    n_layers = len(ffn_layers(student))
    records: list = []
    start = 0
    if ck is not None:
        _load_ffn_state(student, ck["ffn"])
        records, start = ck["records"], ck["next_layer"]
    say = progress or (lambda *a: None)
    try:
        dense.to(o.device)
        student.to(o.device)
        with _autocast(o.device):
            dp = hidden = None
            if o.epochs == 0:                    # distillation only: no layer is refit alone
                start = n_layers
            elif start < n_layers:               # (a checkpoint past the blocks needs no dense pass)
                say("dense pass", 0, text.n_tokens, "")
                dp = block.dense_pass(dense, text.teacher, batch=8,
                                      progress=lambda n, c=[0]: (c.__setitem__(0, c[0] + n),
                                                                 say("dense pass", c[0], text.n_tokens, ""))[-1])
                hidden = block.run_layers(student, dp, start) if start else None

            def on_layer(l, rec, h):
                records.append(rec)
                say("block reconstruction", l + 1, n_layers,
                    f"layer {l}: error {rec['held_out_rel_error_before']:.3f} → "
                    f"{rec['held_out_rel_error_after']:.3f}")
                if checkpoint is not None and dd.is_main():
                    save_checkpoint(checkpoint, {"key": key, "next_layer": l + 1, "records": records,
                                                 "ffn": _ffn_state(student, range(l + 1))})

            if start < n_layers:
                block.reconstruct(student, dp, epochs=o.epochs, lr=o.lr, batch_tokens=o.batch_tokens,
                                  holdout=o.holdout, seed=o.seed, start_layer=start, hidden=hidden,
                                  target=o.target, dense_model=dense,
                                  deadline=None if deadline is None else
                                  t0 + (deadline - t0) * (0.7 if o.distill_steps else 1.0),
                                  on_layer=on_layer, should_stop=stop)
            del dp, hidden
            if stop():
                raise Cancelled("healing cancelled")
            dist = None
            if o.distill_steps:
                say("teacher top-k", 0, text.n_tokens, "")
                top = distill.teacher_topk(dense, text.teacher, o.top_k, kept)

                def on_checkpoint(state):
                    if checkpoint is not None and dd.is_main():
                        # the distillation state holds every FFN weight (and more with "all")
                        save_checkpoint(checkpoint, {"key": key, "next_layer": n_layers,
                                                     "records": records, "ffn": {}, "distill": state})

                dist = distill.distill(student, text.student, top, steps=o.distill_steps,
                                       lr=o.distill_lr, batch=o.distill_batch, seed=o.seed,
                                       train=o.distill_params,
                                       resume=(ck or {}).get("distill"), on_checkpoint=on_checkpoint,
                                       deadline=deadline, should_stop=stop,
                                       on_step=lambda s, loss: say("distillation", s + 1,
                                                                   o.distill_steps, f"KL {loss:.4f}"))
                if stop():
                    raise Cancelled("healing cancelled")
    finally:
        torch.set_num_threads(old_threads)
        dense.to("cpu")
        student.to("cpu")
    before = [r["held_out_rel_error_before"] for r in records]
    after = [r["held_out_rel_error_after"] for r in records]
    return {
        "method": "; then ".join(m for m in (
            ("block reconstruction: each FFN, fed by the already-healed layers below, refit "
             + ("to what the dense FFN makes of the same input" if o.target == "mlp" else
                "so that its layer's output matches the dense residual stream")) if o.epochs else "",
            "distillation: KL(dense || pruned) over the teacher's top-k" if dist else "") if m),
        "tokens": text.n_tokens, "langs": text.langs, "tokens_per_group": text.tokens_per_lang,
        "text_digest": text.digest, "split": "profile (+ user text); never evaluation text",
        "options": {k: getattr(o, k) for k in ("seq_len", "epochs", "target", "lr", "batch_tokens", "holdout",
                                               "distill_steps", "distill_lr", "distill_batch",
                                               "top_k", "distill_params", "budget_minutes", "seed")},
        "layers": records,
        "mean_rel_error_before": sum(before) / len(before) if before else None,
        "mean_rel_error_after": sum(after) / len(after) if after else None,
        "distillation": dist, "resumed_from_layer": (start if o.epochs else 0) or None,
        "seconds": round(time.perf_counter() - t0, 1), "device": o.device,
        "threads": o.threads or torch.get_num_threads(), "finished": now_utc(),
    }


class _autocast:
    """bf16 autocast on CUDA; nothing on CPU (fp32 there is both faster and exact enough)."""

    def __init__(self, device: str):
        self.ctx = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else None

    def __enter__(self):
        return self.ctx.__enter__() if self.ctx else None

    def __exit__(self, *exc):
        return self.ctx.__exit__(*exc) if self.ctx else False


# ------------------------------------------------------------------ a pruned directory

def dense_for(plan, loader=None):
    """The dense model a pruned directory came from (its plan's provenance), checked by
    fingerprint."""
    from ..models import load_model

    prov = plan.provenance or {}
    spec = prov.get("source_model") or prov.get("source_path")
    if not spec:
        raise UserError("the pruning plan does not say which model was pruned; heal needs it "
                        "(prune again with this babel-edge)")
    lm = (loader or load_model)(spec)
    want = prov.get("source_fingerprint")
    if want and lm.fingerprint != want:
        raise UserError(f"the source model '{spec}' has changed since pruning (fingerprint "
                        f"{lm.fingerprint}, plan {want}); prune again")
    return lm


def heal(model_dir: str | Path, out: str | Path, *, corpus: str | None = None,
         heal_text: Sequence[str | Path] = (), options: HealOptions = HealOptions(),
         progress: Progress | None = None, cancel: threading.Event | None = None):
    """Heal a pruned-model directory into `out` (an ordinary pruned directory whose plan
    records what healing did). Returns (out path, plan)."""
    from ..corpus import load_corpus, load_user_corpus
    from ..models import load_model
    from ..prune.model_dir import check_out_dir, save_pruned
    from ..prune.plan import PruningPlan
    from ..prune.run import fitting_texts
    from ..vocab import read_user_text
    from .data import training_text

    o = options.validate()
    src = Path(model_dir).expanduser()
    plan = PruningPlan.read(src)
    if plan is None:
        raise UserError(f"'{src}' has no pruning_plan.json; give a directory written by "
                        f"'babel-edge prune'")
    out = Path(out).expanduser()
    if out.resolve() == src.resolve():
        raise UserError("--out must differ from --model (the pruned directory stays as it is)")
    check_out_dir(out)
    extra = read_user_text(list(heal_text))
    corp = load_user_corpus(corpus, plan.target_langs) if corpus else load_corpus()
    texts_for = fitting_texts(corp, plan.target_langs)
    for lang in plan.target_langs:
        texts_for(lang)
    student = load_model(str(src))
    dense = dense_for(plan)
    text = training_text(plan.target_langs, texts_for, student.tokenizer, o.seq_len, o.tokens,
                         extra, plan.kept_token_ids)
    part = out.with_name(out.name + ".heal-partial")
    part.mkdir(parents=True, exist_ok=True)
    from .. import distributed as dd

    record = heal_loaded(dense.model, student.model, text, o, kept=plan.kept_token_ids,
                         checkpoint=part / "checkpoint.pt", progress=progress, cancel=cancel)
    plan.healing = dict(record, processes=dd.world())
    if not dd.is_main():                 # under torchrun: rank 0 writes
        return out, plan
    path = save_pruned(student.model, out, plan, source_dir=src, tokenizer=student.tokenizer)
    import shutil

    shutil.rmtree(part, ignore_errors=True)
    return path, plan


def summary_lines(record: dict) -> list[str]:
    lines = [f"healed on {record['tokens']:,} tokens ({', '.join(record['langs'])}) in "
             f"{record['seconds']:.0f} s on {record['device']}"]
    if record["mean_rel_error_before"] is not None:
        lines.append(f"  block reconstruction: mean held-out relative error per layer "
                     f"{record['mean_rel_error_before']:.4f} → {record['mean_rel_error_after']:.4f}")
    d = record.get("distillation")
    if d and d["steps"]:
        lines.append(f"  distillation: {d['steps']} steps, KL {d['loss_first']:.4f} → "
                     f"{d['loss_last10_mean']:.4f} (mean of the last 10)")
    return lines


def _dumps(record: dict) -> str:
    return json.dumps(record, indent=1)

"""Healing on tiny models: it lowers the layer errors, the distillation loss and the loss on
held-out text; it reads no evaluation text; an interrupted run resumes to the same weights."""
from __future__ import annotations

import json
import threading

import pytest
import torch

from babel_edge.errors import UserError
from babel_edge.heal import HealOptions
from babel_edge.heal.data import training_text
from babel_edge.heal.run import Cancelled, heal, heal_loaded
from babel_edge.models import ffn_layers, load_model
from babel_edge.prune import PruneOptions, prune

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LANGS = ["en", "de"]
SMALL = HealOptions(tokens=2048, seq_len=64, epochs=3, lr=3e-3, batch_tokens=256, distill_steps=0)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("BABEL_EDGE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def pruned_dir(tiny_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("heal") / "pruned"
    prune(str(tiny_dirs["gemma3_text"]), None, LANGS, 0.6, out,
          options=PruneOptions(strategy="magnitude", schedule="uniform", calib_tokens=512,
                               multiple_of=16))
    return out


@pytest.fixture(scope="module")
def corpus():
    from babel_edge.corpus import load_corpus

    return load_corpus()


def _eval_nll(model, tokenizer, texts) -> float:
    from babel_edge.evaluate import evaluate_languages, hf_tokenize, torch_scorer

    r = evaluate_languages(LANGS, texts, hf_tokenize(tokenizer), torch_scorer(model), max_bytes=3000)
    return sum(x.nll for x in r) / sum(x.n_bytes for x in r)


def test_block_reconstruction_lowers_errors_and_held_out_loss(tiny_dirs, pruned_dir, corpus):
    dense = load_model(str(tiny_dirs["gemma3_text"]))
    student = load_model(str(pruned_dir))
    text = training_text(LANGS, lambda l: corpus.texts(l, "profile"), student.tokenizer, 64, 2048)
    evals = lambda l: corpus.texts(l, "eval")  # noqa: E731
    before = _eval_nll(student.model, student.tokenizer, evals)
    dense_nll = _eval_nll(dense.model, dense.tokenizer, evals)
    rec = heal_loaded(dense.model, student.model, text, SMALL.with_(distill_steps=6, distill_lr=1e-3))
    after = _eval_nll(student.model, student.tokenizer, evals)
    assert len(rec["layers"]) == 4
    for layer in rec["layers"]:
        assert layer["held_out_rel_error_after"] < layer["held_out_rel_error_before"]
    assert rec["mean_rel_error_after"] < 0.97 * rec["mean_rel_error_before"]
    assert after < before and abs(after - dense_nll) < abs(before - dense_nll)   # towards dense
    d = rec["distillation"]
    assert d["steps"] == 6 and d["kl_probe_after"] < d["kl_probe_before"]
    assert rec["tokens"] == 2048 and rec["split"].startswith("profile")


def test_distillation_alone_moves_towards_dense_and_skips_the_blocks(tiny_dirs, pruned_dir, corpus):
    dense = load_model(str(tiny_dirs["gemma3_text"]))
    student = load_model(str(pruned_dir))
    text = training_text(LANGS, lambda l: corpus.texts(l, "profile"), student.tokenizer, 64, 2048)
    before = [p.detach().clone() for p in student.model.parameters()]
    rec = heal_loaded(dense.model, student.model, text,
                      SMALL.with_(epochs=0, distill_steps=6, distill_lr=1e-3))
    assert rec["layers"] == [] and rec["method"].startswith("distillation")
    d = rec["distillation"]
    assert d["steps"] == 6 and d["kl_probe_after"] < d["kl_probe_before"]
    assert any(not torch.equal(a, b) for a, b in zip(before, student.model.parameters()))
    with pytest.raises(UserError, match="nothing to heal"):
        SMALL.with_(epochs=0, distill_steps=0).validate()


def test_teacher_topk_is_the_dense_models_distribution(tiny_dirs, corpus):
    """The cached teacher: the k most likely next tokens under the dense model's full softmax
    (restricted and renormalised to a trimmed vocabulary's kept ids), whatever the chunk."""
    from babel_edge.heal.distill import teacher_topk

    dense = load_model(str(tiny_dirs["gemma3_text"]))
    text = training_text(LANGS, lambda l: corpus.texts(l, "profile"), dense.tokenizer, 64, 256)
    ids = text.teacher
    with torch.no_grad():
        full = torch.log_softmax(dense.model(ids).logits[:, :-1].float(), -1)
    for chunk in (1, 5, 4096):
        top = teacher_topk(dense.model, ids, 4, chunk=chunk)
        assert top.ids.shape == (len(ids), ids.shape[1] - 1, 4)
        ref = full.topk(4, dim=-1)
        assert torch.allclose(top.logp, ref.values, atol=1e-4)
        assert torch.allclose(full.gather(-1, top.ids), top.logp, atol=1e-4)
    kept = sorted(set(range(0, full.shape[-1], 3)) | set(ids.flatten().tolist()))
    sub = torch.log_softmax(full[..., kept], -1)
    top = teacher_topk(dense.model, ids, 4, kept=kept, chunk=7)
    assert torch.allclose(top.logp, sub.topk(4, dim=-1).values, atol=1e-4)
    assert torch.allclose(sub.gather(-1, top.ids), top.logp, atol=1e-4)


def _cancel_then_resume(dense, text, o, pruned_dir, ckpt, stage: str, at: int):
    """An uninterrupted heal (the reference), then one cancelled when `stage` reports `at`
    done, then a rerun from the checkpoint. Returns (reference, resumed model, record,
    (stage, done) seen by the cancelled run, stages the rerun went through)."""
    ref = load_model(str(pruned_dir)).model
    heal_loaded(dense.model, ref, text, o)
    cancel, first, second = threading.Event(), [], []

    def progress(log):
        def report(st, done, total, extra):
            log.append((st, done))
            if st == stage and done == at:
                cancel.set()
        return report

    student = load_model(str(pruned_dir)).model
    with pytest.raises(Cancelled):
        heal_loaded(dense.model, student, text, o, checkpoint=ckpt, progress=progress(first),
                    cancel=cancel)
    again = load_model(str(pruned_dir)).model           # a fresh process would start like this
    rec = heal_loaded(dense.model, again, text, o, checkpoint=ckpt, progress=progress(second))
    return ref, again, rec, first, {st for st, _ in second}


def test_resume_after_cancel_gives_the_same_weights(tiny_dirs, pruned_dir, corpus, tmp_path):
    dense = load_model(str(tiny_dirs["gemma3_text"]))
    text = training_text(LANGS, lambda l: corpus.texts(l, "profile"), dense.tokenizer, 64, 2048)
    ckpt = tmp_path / "ck.pt"
    ref, again, rec, first, _ = _cancel_then_resume(dense, text, SMALL, pruned_dir, ckpt,
                                                    "block reconstruction", 2)
    assert [d for st, d in first if st == "block reconstruction"] == [1, 2] and ckpt.exists()
    assert rec["resumed_from_layer"] == 2 and len(rec["layers"]) == 4
    for a, b in zip(ffn_layers(again), ffn_layers(ref)):
        for n in ("gate", "up", "down"):
            assert torch.equal(getattr(a, n).weight, getattr(b, n).weight), (a.index, n)
    # a checkpoint of other settings is not reused
    other = load_model(str(pruned_dir)).model
    rec = heal_loaded(dense.model, other, text, SMALL.with_(lr=1e-3), checkpoint=ckpt)
    assert rec["resumed_from_layer"] is None


def test_distillation_resumes_mid_run_to_the_same_weights(tiny_dirs, pruned_dir, corpus, tmp_path):
    """Cancelled after 26 distillation steps (checkpoint at 25): the rerun skips the blocks
    and the dense pass, continues at step 25 with the optimizer's state, and ends with the
    uninterrupted run's weights — attention included when distillation trains everything."""
    dense = load_model(str(tiny_dirs["gemma3_text"]))
    text = training_text(LANGS, lambda l: corpus.texts(l, "profile"), dense.tokenizer, 64, 2048)
    o = SMALL.with_(epochs=1, distill_steps=40, distill_lr=1e-3, distill_params="all")
    ref, again, rec, _, stages = _cancel_then_resume(dense, text, o, pruned_dir, tmp_path / "ck.pt",
                                                     "distillation", 26)
    assert "dense pass" not in stages and "block reconstruction" not in stages
    d = rec["distillation"]
    assert d["resumed_from_step"] == 25 and d["steps"] == 40 and d["train"] == "all"
    for (n, a), b in zip(again.named_parameters(), ref.parameters()):
        assert torch.equal(a, b), n


def test_distill_params_choose_what_trains(tiny_dirs, pruned_dir, corpus):
    """ffn: only the kept FFN weights move; all: attention and norms move too; the embedding
    never does, and every requires_grad flag is as it was afterwards."""
    dense = load_model(str(tiny_dirs["gemma3_text"]))
    text = training_text(LANGS, lambda l: corpus.texts(l, "profile"), dense.tokenizer, 64, 2048)
    for which in ("ffn", "all"):
        student = load_model(str(pruned_dir)).model
        flags = {n: p.requires_grad for n, p in student.named_parameters()}
        before = {n: p.detach().clone() for n, p in student.named_parameters()}
        heal_loaded(dense.model, student, text,
                    SMALL.with_(epochs=0, distill_steps=3, distill_lr=1e-3, distill_params=which))
        moved = {n for n, p in student.named_parameters() if not torch.equal(p, before[n])}
        assert moved and all("embed" not in n and "lm_head" not in n for n in moved), which
        ffn = {n for n in moved if ".mlp." in n}
        assert ffn, which
        attn = {n for n in moved if "self_attn" in n}
        assert (attn != set()) == (which == "all"), (which, sorted(moved)[:5])
        assert {n: p.requires_grad for n, p in student.named_parameters()} == flags
    with pytest.raises(UserError, match="distill-params"):
        SMALL.with_(distill_params="lora").validate()


class _Spy:
    """The built-in corpus, recording every (language, split) read."""

    def __init__(self, corpus):
        self.corpus, self.reads = corpus, []

    def __getattr__(self, name):
        return getattr(self.corpus, name)

    def __contains__(self, lang):
        return lang in self.corpus

    def texts(self, lang, split="profile", *a, **kw):
        self.reads.append((lang, split))
        return self.corpus.texts(lang, split, *a, **kw)


def test_heal_directory_reads_no_eval_text_and_records_it(pruned_dir, corpus, tmp_path, monkeypatch):
    import babel_edge.corpus as corpus_mod

    spy = _Spy(corpus)
    monkeypatch.setattr(corpus_mod, "load_corpus", lambda: spy)
    out, plan = heal(pruned_dir, tmp_path / "healed", options=SMALL)
    assert spy.reads and {split for _, split in spy.reads} == {"profile"}
    saved = json.loads((out / "pruning_plan.json").read_text())
    assert saved["healing"]["tokens"] == 2048 and len(saved["healing"]["layers"]) == 4
    assert saved["layers"] == json.loads((pruned_dir / "pruning_plan.json").read_text())["layers"]
    assert not (tmp_path / "healed.heal-partial").exists()
    healed = load_model(str(out))
    ids = torch.tensor([healed.tokenizer("Guten Tag")["input_ids"]])
    assert healed.model(ids).logits.isfinite().all()


def test_heal_cli_errors_are_one_line(pruned_dir, tmp_path, capsys):
    from babel_edge.cli import main

    assert main(["heal", "--model", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "pruning_plan.json" in capsys.readouterr().err
    assert main(["heal", "--model", str(pruned_dir), "--out", str(tmp_path / "o"),
                 "--heal-tokens", "4"]) == 2
    err = capsys.readouterr().err
    assert "--heal-tokens" in err and len(err.strip().splitlines()) == 1

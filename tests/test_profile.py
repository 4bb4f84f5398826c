"""Profiler on tiny models, including one with planted language-specific and shared neurons."""
import random
import struct

import pytest
import torch

from babel_edge.errors import UserError
from babel_edge.experts import random_split
from babel_edge.models.loader import LoadedModel
from babel_edge.models.tiny import build_tiny_model
from babel_edge.profile import (_special_ids, _tokenize, iter_batches, load_profile, make_batches,
                                partial_dir_for,
                                profile_model, read_neurons, record_language, save_profile,
                                top_k_for,
                                take_sequences)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------ the planted model
# Three "languages" written in three scripts; the tiny byte-level BPE gives each script
# its own tokens. In layer PLANT_LAYER, 16 neurons fire only on tokens that occur in one
# language's text (one group per language) and 16 fire on every token; the rest is random.

ALPHABETS = {"xx": "абвгдежзиклмнопрстуфхцчшщыэюя",
             "yy": "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会",
             "zz": "कखगघचछजझटठडढणतथदधनपफबभमयरलवशसह"}
PLANT_LAYER = 1
GROUP = 16                      # neurons per planted group = the expert size used in the tests
PLANTED = {"xx": range(0, 16), "yy": range(16, 32), "zz": range(32, 48), "shared": range(48, 64)}


def language_texts(lang: str, n: int = 40, seed: int = 0) -> list[str]:
    rng = random.Random(f"{lang}-{seed}")
    letters = ALPHABETS[lang]
    return [" ".join("".join(rng.choice(letters) for _ in range(rng.randint(2, 6)))
                     for _ in range(rng.randint(4, 30))) for _ in range(n)]


def build_planted(model_type: str = "llama"):
    """(LoadedModel, texts) with planted neurons; marker dims 0..2 = language, 3 = any token."""
    texts = {lang: language_texts(lang) for lang in ALPHABETS}
    model, tok = build_tiny_model(model_type, seed=0, texts=[t for ts in texts.values() for t in ts])
    seen = {lang: {i for t in ts for i in tok(t)["input_ids"]} for lang, ts in texts.items()}
    with torch.no_grad():
        emb = model.get_input_embeddings().weight                 # [V, H]
        emb[:, :4] = 0
        for d, lang in enumerate(ALPHABETS):
            only = seen[lang] - set().union(*(seen[o] for o in ALPHABETS if o != lang))
            emb[sorted(only), d] = 1.0
        emb[:, 3] = 1.0
        for layer in model.model.layers:        # nothing else writes the marker dims of the residual
            layer.self_attn.o_proj.weight[:4] = 0
            layer.mlp.down_proj.weight[:4] = 0
        mlp = model.model.layers[PLANT_LAYER].mlp
        for d, group in enumerate(PLANTED.values()):
            for w in (mlp.gate_proj.weight, mlp.up_proj.weight):
                w[list(group)] = 0
                w[list(group), d] = 3.0
    lm = LoadedModel(model=model, tokenizer=tok, spec="planted", path=None, arch=model_type,
                     family="test", fingerprint=f"planted-{model_type}")
    return lm, texts


@pytest.fixture(scope="module")
def planted():
    return build_planted()


@pytest.fixture(scope="module")
def planted_profile(planted):
    lm, texts = planted
    return profile_model(lm, list(texts), texts.__getitem__, tokens_per_lang=600, min_tokens=100,
                         expert_size=GROUP, top_k_share=0.25, batch_size=8, max_len=32)


def _expert_of(prof, neurons) -> int:
    a = prof.expert_map.assignment(PLANT_LAYER)[list(neurons)]
    assert a.unique().numel() == 1, "planted neurons must form one expert"
    return int(a[0])


# ------------------------------------------------------------------ tests

def test_planted_neurons_recovered(planted_profile):
    p = planted_profile
    assert p.langs == ["xx", "yy", "zz"] and p.tokens.tolist() == [600, 600, 600]
    f = p.expert_freq(PLANT_LAYER)                                # [Lang, E]
    for li, lang in enumerate(p.langs):
        e = _expert_of(p, PLANTED[lang])
        assert f[li, e] > 0.8                                     # fires on its own language
        assert f[[j for j in range(3) if j != li], e].max() < 0.05   # and not on the others
        nf = p.neuron_freq(PLANT_LAYER)[:, list(PLANTED[lang])]
        assert nf[li].min() > 0.8 and nf[[j for j in range(3) if j != li]].max() < 0.05
    e = _expert_of(p, PLANTED["shared"])
    assert f[:, e].min() > 0.99
    # mean mass: the planted language expert is far heavier on its own language
    m = p.expert_mean_mass(PLANT_LAYER)
    e = _expert_of(p, PLANTED["xx"])
    assert m[0, e] > 100 * m[1:, e].max()
    assert p.layer_mean_mass().shape == (3, 4)


def test_recording_never_changes_output(planted):
    lm, texts = planted
    ids = lm.tokenizer(texts["xx"][0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ref = lm.model(ids).logits
    seen = []

    def reduce(layer, a):
        x = a.abs()
        x.add_(1)                 # a reducer working on a copy cannot disturb the forward
        seen.append(layer)

    with torch.no_grad(), read_neurons(lm.model, reduce):
        out = lm.model(ids).logits
    assert torch.equal(ref, out) and seen == [0, 1, 2, 3]
    # the real reducer too: it counts, and the output stays the same
    from babel_edge.profile.data import LangStats
    from babel_edge.profile.record import _stats_reducer

    em, base = random_split([256] * 4, 32, seed=0), random_split([256] * 4, 32, seed=1)
    stats = LangStats.zeros(em, base)
    maps = ([em.one_hot(i) for i in range(4)], [base.one_hot(i) for i in range(4)])
    ks = ([top_k_for(em.n_experts(i), 0.25) for i in range(4)],
          [top_k_for(base.n_experts(i), 0.25) for i in range(4)])
    with torch.no_grad(), read_neurons(lm.model, _stats_reducer(stats, [torch.arange(ids.numel())],
                                                                maps, ks)):
        out = lm.model(ids).logits
    assert torch.equal(ref, out)
    assert all(int(c.sum()) == ids.numel() * ks[0][i] for i, c in enumerate(stats.expert_count))
    # the hooks are gone afterwards, also after an error
    with pytest.raises(RuntimeError):
        with read_neurons(lm.model, lambda i, a: (_ for _ in ()).throw(RuntimeError("boom"))):
            with torch.no_grad():
                lm.model(ids)
    assert all(not layer.mlp.down_proj._forward_pre_hooks for layer in lm.model.model.layers)
    with torch.no_grad():
        assert torch.equal(lm.model(ids).logits, ref)


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
def test_padding_is_never_counted(model_type):
    lm, texts = build_planted(model_type)
    special = _special_ids(lm.tokenizer)
    seqs, n = take_sequences(texts["zz"] + texts["xx"], _tokenize(lm.tokenizer), 400, 40, special)
    em = random_split([256] * 4, 32, seed=0)
    base = random_split([256] * 4, 32, seed=1)
    one = record_language(lm.model, make_batches(seqs, 1, 0, special), em, base, 0.25)
    padded = make_batches(seqs[::-1], 7, 0, special)
    assert any((b.mask == 0).any() for b in padded)
    many = record_language(lm.model, padded, em, base, 0.25)
    assert one.tokens == many.tokens == n == 400
    for i in range(4):
        # counts are exact integers; allow a single flip per layer from BLAS rounding near a tie
        assert (one.expert_count[i] - many.expert_count[i]).abs().sum() <= 2
        assert (one.neuron_count[i] - many.neuron_count[i]).abs().sum() <= 2
        torch.testing.assert_close(one.neuron_mass[i], many.neuron_mass[i], rtol=1e-4, atol=1e-6)
        assert int(one.expert_count[i].sum()) == n * 8 // 4      # k = 25% of 8 experts per token


def test_take_sequences_exact_count_and_long_paragraphs(planted):
    lm, texts = planted
    special = _special_ids(lm.tokenizer)
    tok = _tokenize(lm.tokenizer)
    long_text = " ".join(texts["xx"])
    seqs, n = take_sequences([long_text], tok, 250, 32, special)
    assert n == 250 and all(len(q) <= 32 for q in seqs)
    assert all(q[0] == lm.tokenizer.bos_token_id for q in seqs)      # every piece starts with BOS
    assert sum(len(q) - 1 for q in seqs) == 250
    # windowed batching (bounded memory) covers every counted token exactly once
    batches = list(iter_batches(iter(seqs), batch_size=3, pad_id=0, special_ids=special, window=5))
    assert sum(b.n_tokens for b in batches) == 250 and max(b.ids.shape[0] for b in batches) <= 3


def test_save_load_round_trip(planted_profile, tmp_path):
    path = save_profile(planted_profile, tmp_path / "p.safetensors")
    q = load_profile(path, model_fingerprint="planted-llama")
    assert q.langs == planted_profile.langs
    assert q.header["babel_edge_version"] and q.header["activation"]["top_k"] == [4] * 4
    assert q.header["model"]["fingerprint"] == "planted-llama"
    assert [d["tokens"] for d in q.language_info()] == [600, 600, 600]
    for i in range(4):
        assert torch.equal(q.expert_count[i], planted_profile.expert_count[i])
        assert torch.equal(q.neuron_mass[i], planted_profile.neuron_mass[i])
        assert torch.equal(q.expert_map.experts[i], planted_profile.expert_map.experts[i])
    sub = q.select(["zz", "xx"])
    assert torch.equal(sub.expert_freq(1)[1], q.expert_freq(1)[0])


def test_mismatch_and_corrupt_files_refused(planted_profile, tmp_path):
    path = save_profile(planted_profile, tmp_path / "p.safetensors")
    with pytest.raises(UserError, match="another model"):
        load_profile(path, model_fingerprint="something-else")
    data = path.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.safetensors").write_bytes(b"not a profile at all")
    n = struct.unpack("<Q", data[:8])[0]
    (tmp_path / "header.safetensors").write_bytes(data[:8] + data[8:8 + n].replace(b"expert", b"exbert")
                                                 + data[8 + n:])
    for name in ("trunc", "garbage", "header", "missing"):
        with pytest.raises(UserError, match="corrupt|not a babel-edge|does not exist"):
            load_profile(tmp_path / f"{name}.safetensors")


def test_too_few_tokens_and_bad_options(planted):
    lm, texts = planted
    with pytest.raises(UserError, match="too few tokens of text for xx"):
        profile_model(lm, ["xx"], lambda lang: texts[lang][:2], tokens_per_lang=5000, min_tokens=1000)
    with pytest.raises(UserError, match="top-k-share"):
        profile_model(lm, ["xx"], texts.__getitem__, top_k_share=1.5)


def test_resume_reuses_finished_languages(planted, tmp_path):
    lm, texts = planted
    out = tmp_path / "p.safetensors"
    part = partial_dir_for(out)
    kw = dict(tokens_per_lang=200, min_tokens=50, expert_size=GROUP, max_len=32, partial_dir=part)
    calls = []

    def texts_for(lang):
        calls.append(lang)
        return texts[lang]

    # "interrupted": only xx and yy finished
    profile_model(lm, ["xx", "yy"], texts_for, **kw)
    assert sorted(f.name for f in part.iterdir()) == ["xx.safetensors", "yy.safetensors"]
    full = profile_model(lm, ["xx", "yy", "zz"], texts_for, **kw)
    assert full.header["run"]["languages_resumed"] == ["xx", "yy"]
    fresh = profile_model(lm, ["xx", "yy", "zz"], texts.__getitem__, **dict(kw, partial_dir=None))
    for i in range(4):
        assert torch.equal(full.expert_count[i], fresh.expert_count[i])
    # other settings -> nothing reused
    other = profile_model(lm, ["xx"], texts_for, **dict(kw, top_k_share=0.5))
    assert other.header["run"]["languages_resumed"] == []


def test_coactivation_and_random_splits_run(planted):
    lm, texts = planted
    kw = dict(tokens_per_lang=300, min_tokens=100, expert_size=GROUP, max_len=32)
    co = profile_model(lm, list(texts), texts.__getitem__, split="coactivation", coact_tokens=600, **kw)
    assert co.expert_map.method == "coactivation" and co.header["experts"]["method"] == "coactivation"
    # planted neurons fire together on their language only: co-activation groups them
    for lang in ("xx", "yy", "zz"):
        _expert_of(co, PLANTED[lang])
    rnd = profile_model(lm, ["xx"], texts.__getitem__, split="random", **kw)
    assert rnd.baseline_map.digest() == rnd.expert_map.digest()      # the baseline is itself
    for i in range(4):
        assert torch.equal(rnd.expert_count[i], rnd.baseline_count[i])


@pytest.mark.integration
def test_embedded_model_profile_and_report(embedded, tmp_path):
    """Gemma 3 270M on 3 languages x 1024 tokens: shapes, invariants, file, report."""
    from babel_edge.corpus import load_corpus
    from babel_edge.report import write_report

    corpus = load_corpus()
    prof = profile_model(embedded, ["en", "de", "zh"], lambda lang: corpus.texts(lang, "profile"),
                         tokens_per_lang=1024)
    assert prof.n_layers == 18 and all(prof.expert_map.n_experts(i) == 64 for i in range(18))
    assert prof.tokens.tolist() == [1024] * 3
    for i in range(18):                   # every token activates exactly k = 16 experts per layer
        assert prof.expert_count[i].sum(1).tolist() == [1024 * 16] * 3
    assert prof.header["model"]["arch"] == "gemma3_text"
    path = save_profile(prof, tmp_path / "g.safetensors")
    assert load_profile(path, model_fingerprint=embedded.fingerprint).langs == ["en", "de", "zh"]
    with pytest.raises(UserError, match="another model"):
        load_profile(path, model_fingerprint="0" * 24)
    s = write_report(load_profile(path), tmp_path / "report")
    assert sum(s["per_layer"]["shared_all"]) > 0
    assert (tmp_path / "report" / "report.html").stat().st_size > 10_000


def test_device_map_and_bfloat16_profiles(tiny_dirs, tmp_path, monkeypatch, capsys):
    """`profile --device-map auto` loads through accelerate (here: every layer on the CPU) and
    writes the counts the plain load writes; `--dtype bfloat16` profiles the bf16 weights —
    counts move a little, not much — and the header says which."""
    from babel_edge.cli import main

    monkeypatch.setenv("BABEL_EDGE_CACHE", str(tmp_path / "cache"))
    base = ["profile", "--model", str(tiny_dirs["llama"]), "--langs", "en,de",
            "--tokens-per-lang", "512", "--min-tokens", "64", "--experts-size", "16"]
    outs = {}
    for name, extra in (("plain", []), ("mapped", ["--device-map", "auto"]),
                        ("bf16", ["--dtype", "bfloat16"])):
        outs[name] = tmp_path / f"{name}.safetensors"
        assert main(base + extra + ["--out", str(outs[name])]) == 0, capsys.readouterr().err
    plain, mapped, bf16 = (load_profile(outs[n]) for n in ("plain", "mapped", "bf16"))
    assert mapped.header["run"]["device_map"] == ["cpu"] and bf16.header["run"]["dtype"] == "bfloat16"
    for i in range(plain.n_layers):
        assert torch.equal(plain.expert_count[i], mapped.expert_count[i])
        assert torch.equal(plain.neuron_count[i], mapped.neuron_count[i])
        assert (plain.neuron_freq(i) - bf16.neuron_freq(i)).abs().max() < 0.1
    assert any(not torch.equal(plain.neuron_count[i], bf16.neuron_count[i])
               for i in range(plain.n_layers))
    assert main(base + ["--device-map", "everywhere", "--out", str(tmp_path / "x.st")]) == 2
    assert "--device-map 'everywhere'" in capsys.readouterr().err

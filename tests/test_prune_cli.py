"""`babel-edge prune` and `babel-edge eval` as a user runs them: exit codes, one-line errors,
the files written."""
from __future__ import annotations

import json

import pytest

from babel_edge.cli import build_parser, main

LANGS = ["en", "de", "fr"]


def run(*argv) -> int:
    """The real entry point: user errors -> one line on stderr, exit code 2."""
    return main([str(a) for a in argv])


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("BABEL_EDGE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def profile_file(tiny_dirs, tmp_path_factory):
    from babel_edge.corpus import load_corpus
    from babel_edge.models import load_model
    from babel_edge.profile import profile_model, save_profile

    corpus = load_corpus()
    lm = load_model(str(tiny_dirs["llama"]))
    prof = profile_model(lm, LANGS, lambda l: corpus.texts(l, "profile"), tokens_per_lang=256,
                         min_tokens=64, expert_size=16, max_len=128)
    return save_profile(prof, tmp_path_factory.mktemp("prof") / "llama.safetensors")


def test_help_describes_both_commands():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in ("prune", "eval"):
        sp = sub.choices[name]
        assert sp.description and sp.format_help().strip()
    h = sub.choices["prune"].format_help()
    for opt in ("--rate", "--strategy", "--schedule", "--granularity", "--no-compensate",
                "--multiple-of", "--out", "massive"):
        assert opt in h


def test_prune_then_eval(tiny_dirs, profile_file, tmp_path, capsys):
    out = tmp_path / "pruned"
    rc = run("prune", "--model", tiny_dirs["llama"], "--profile", profile_file, "--langs", "en,de",
             "--rate", "0.5", "--calib-tokens", "256", "--multiple-of", "16", "--out", out)
    assert rc == 0, capsys.readouterr().err
    plan = json.loads((out / "pruning_plan.json").read_text())
    assert plan["target_langs"] == ["en", "de"] and plan["strategy"] == "mass"
    assert sum(l["width"] for l in plan["layers"]) == 512
    assert (out / "tokenizer.json").exists() and (out / "model.safetensors").exists()
    assert "saved" in capsys.readouterr().out

    rc = run("eval", "--model", out, "--langs", "en,de,ru", "--max-bytes", "200")
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((out / "eval.json").read_text())
    assert rep["target_langs"] == ["en", "de"]
    ev = [r for r in rep["results"] if r["text"] == "eval"]
    assert [(r["lang"], r["target"]) for r in ev] == [("en", True), ("de", True), ("ru", False)]
    assert rep["texts"][0] == "unseen" and rep["unseen_domain"]       # the unseen domain first
    unseen = [r for r in rep["results"] if r["text"] == "unseen"]
    assert {r["lang"] for r in unseen} >= {"en", "de"}
    assert rep["params"]["ffn"] == plan["params"]["ffn_after"]
    assert rep["file_bytes"] > 0 and rep["summary"]["eval"]["other_ppl_gmean"] > 1
    assert rep["pruning"]["compensate"] is True


@pytest.mark.parametrize("extra, expect", [
    (["--rate", "1.5"], "between 0 and 1"),
    (["--rate", "0"], "between 0 and 1"),
    (["--langs", "en,zh"], "not in this profile"),
    (["--langs", "en,germn"], "did you mean 'de'"),          # 'ger' is German's ISO 639-2 code
    (["--rate", "0.99"], "below the floor"),                  # a width would reach zero
    (["--multiple-of", "48"], "multiple of 48"),
])
def test_bad_prune_input_is_one_line_exit_2(tiny_dirs, profile_file, tmp_path, capsys, extra, expect):
    args = {"--model": tiny_dirs["llama"], "--profile": profile_file, "--langs": "en",
            "--rate": "0.5", "--out": tmp_path / "o"}
    for k, v in zip(extra[::2], extra[1::2]):
        args[k] = v
    rc = run("prune", *[x for kv in args.items() for x in kv], "--calib-tokens", "128")
    err = capsys.readouterr().err
    assert rc == 2 and expect in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_profile_of_another_model_is_refused(tiny_dirs, profile_file, tmp_path, capsys):
    rc = run("prune", "--model", tiny_dirs["qwen2"], "--profile", profile_file, "--langs", "en",
             "--rate", "0.5", "--out", tmp_path / "o")
    err = capsys.readouterr().err
    assert rc == 2 and "another model" in err and len(err.strip().splitlines()) == 1
    rc = run("prune", "--model", tiny_dirs["qwen2"], "--langs", "en", "--rate", "0.5",
             "--out", tmp_path / "o")
    assert rc == 2 and "--profile is needed" in capsys.readouterr().err


def test_streamed_prune_and_export_from_the_command_line(tiny_dirs, profile_file, tmp_path, capsys):
    """`prune --stream` writes the tensors the in-memory `prune` writes for the same options
    (mass strategy from the profile, adaptive schedule, no compensation), and `export --stream`
    turns it into a GGUF that passes parity; what --stream cannot do is refused in one line."""
    import torch
    from safetensors.torch import load_file

    common = ["--model", tiny_dirs["llama"], "--profile", profile_file, "--langs", "en,de",
              "--rate", "0.5", "--multiple-of", "16", "--no-compensate"]
    # the streamed path's default schedule is adaptive (the search runs the model)
    assert run("prune", *common, "--schedule", "adaptive", "--out", tmp_path / "mem") == 0, \
        capsys.readouterr().err
    assert run("prune", *common, "--stream", "--out", tmp_path / "st") == 0, capsys.readouterr().err
    assert "streamed" in capsys.readouterr().out
    a = load_file(str(tmp_path / "mem" / "model.safetensors"))
    b = {}
    for f in (tmp_path / "st").glob("*.safetensors"):
        b.update(load_file(str(f)))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    pa = json.loads((tmp_path / "mem" / "pruning_plan.json").read_text())
    pb = json.loads((tmp_path / "st" / "pruning_plan.json").read_text())
    assert pb["schedule"] == pa["schedule"] == "adaptive"
    assert [l["kept"] for l in pa["layers"]] == [l["kept"] for l in pb["layers"]]
    assert pb["params"]["total_after"] == pa["params"]["total_after"]

    gguf = tmp_path / "st.gguf"
    rc = run("export", "--stream", "--model", tmp_path / "st", "--format", "gguf", "--quant", "f16",
             "--threads", "1", "--out", gguf)
    assert rc == 0, capsys.readouterr().err
    summary = json.loads(next(tmp_path.glob("st*.json")).read_text())
    assert gguf.exists() and summary["parity"]["passed"]

    for extra, expect in ((["--trim-vocab"], "--trim-vocab"), ([], "--compensate")):
        args = [x for x in common if x != "--no-compensate"] if not extra else common + extra
        rc = run("prune", *args, "--stream", "--out", tmp_path / "bad")
        err = capsys.readouterr().err
        assert rc == 2 and expect in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "bad").exists()
    rc = run("export", "--stream", "--model", tmp_path / "st", "--format", "onnx",
             "--out", tmp_path / "o")
    assert rc == 2 and "GGUF only" in capsys.readouterr().err

"""The command line as a user runs it: real subprocesses for exit codes and stderr."""
import json
import subprocess
import sys

import pytest

from babel_edge.cli import build_parser


def run(*args, env_extra=None):
    return subprocess.run([sys.executable, "-m", "babel_edge.cli", *args], capture_output=True,
                          text=True, timeout=600)


def test_every_subcommand_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"models", "langs", "ppl"} <= set(sub.choices)
    for name, p in sub.choices.items():
        assert p.format_help().strip(), name
        assert p.description, f"{name} has no description"


def test_langs_lists_corpus_languages():
    r = run("langs")
    assert r.returncode == 0, r.stderr
    for code in ("en", "de", "zh-Hans", "zh-Hant", "ar", "ru", "sw", "sr-Latn"):
        assert f" {code} " in r.stdout
    for domain in ("libreoffice", "udhr", "handbook", "fortunes", "scripture"):
        assert f" {domain} " in r.stdout and f"\n{domain}: " in r.stdout


def test_models_lists_embedded_and_architectures():
    r = run("models")
    assert r.returncode == 0, r.stderr
    assert "gemma-3-270m" in r.stdout and "Qwen2" in r.stdout


def test_ppl_on_tiny_model_writes_json(tiny_dirs, tmp_path):
    out = tmp_path / "ppl.json"
    r = run("ppl", "--model", str(tiny_dirs["llama"]), "--langs", "en,de", "--max-bytes", "400",
            "--json", str(out))
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert [x["lang"] for x in data["results"] if x["text"] == "eval"] == ["en", "de"]
    assert [x["lang"] for x in data["results"] if x["text"] == "unseen"] == ["en", "de"]
    for x in data["results"]:
        assert x["n_tokens"] >= 64
        # a random model over a ~500-token vocabulary: perplexity near the vocabulary size
        assert 50 < x["ppl"] < 5000


@pytest.mark.parametrize("args, expect", [
    (["ppl", "--langs", "en,deutsch"], "did you mean 'de'"),
    (["ppl", "--model", "/no/such/dir", "--langs", "en"], "not found"),
    (["ppl", "--engine", "llama.cpp", "--model", ".", "--langs", "en"], "GGUF"),
    (["models", "--model", "/no/such/dir"], "not found"),
    (["langs", "--corpus", "/no/such/corpus"], "corpus"),
])
def test_bad_input_is_one_line_exit_2(args, expect):
    r = run(*args)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert expect in lines[0]
    assert "Traceback" not in r.stderr

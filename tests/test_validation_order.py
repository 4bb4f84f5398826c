"""Cheap checks come before anything expensive: every verb reports bad input (a missing
profile, a bad --out, an unknown language, a rate out of range, ...) in one line with exit
code 2 before the model loads.

Proof that no load happened: BABEL_EDGE_CACHE points at an empty folder and the model is
the embedded one, which a load assembles and converts into that cache (minutes), so the
cache must still be empty and the command must end within seconds."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

TIMEOUT = 90    # a model load would take minutes; startup and the checks take seconds


def run_cli(args: list[str], cache: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, BABEL_EDGE_CACHE=str(cache))
    try:
        return subprocess.run([sys.executable, "-m", "babel_edge.cli", *args], capture_output=True,
                              text=True, timeout=TIMEOUT, env=env, cwd=cwd)
    except subprocess.TimeoutExpired:
        pytest.fail(f"babel-edge {' '.join(args)} ran past {TIMEOUT} s: it started loading "
                    f"the model before reporting the bad input")


def cache_files(cache: Path) -> list[str]:
    return [str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file()] if cache.exists() else []


@pytest.fixture
def work(tmp_path):
    """A user corpus with en, de and zh-TW but no fr; a non-empty folder; a fake artefact."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for code in ("en", "de"):
        (corpus / f"{code}.txt").write_text(f"A {code} paragraph.\n\nAnother one.\n")
    (corpus / "zh-TW.txt").write_text("繁體中文的段落。\n")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file").write_text("x")
    (tmp_path / "fake.gguf").write_bytes(b"GGUF")
    return tmp_path


CASES = [
    # verb, arguments ({w} = the work folder), what the one line says
    (["prune", "--profile", "{w}/missing.safetensors", "--langs", "en,de,fr", "--rate", "0.5",
      "--out", "{w}/pruned"], "missing.safetensors' does not exist"),
    (["prune", "--strategy", "magnitude", "--schedule", "uniform", "--langs", "en", "--rate",
      "1.5", "--out", "{w}/pruned"], "--rate"),
    (["prune", "--strategy", "magnitude", "--schedule", "uniform", "--langs", "en,xx", "--rate",
      "0.5", "--out", "{w}/pruned"], "unknown language 'xx'"),
    (["profile", "--langs", "en", "--top-k-share", "2", "--out", "{w}/p.safetensors"],
     "--top-k-share"),
    (["profile", "--langs", "en,la", "--out", "{w}/p.safetensors"], "no Latin (la) text"),
    (["profile", "--langs", "en", "--out", "{w}/no/such/folder/p.safetensors"], "does not exist"),
    (["eval", "--langs", "en,de,fr", "--corpus", "{w}/corpus"], "has no text for fr (French)"),
    (["eval", "--langs", "en", "--json", "{w}/no/such/folder/e.json"], "does not exist"),
    (["build", "--rate", "2", "--out", "{w}/build"], "--rate"),
    (["build", "--langs", "en,pt-AO", "--out", "{w}/build"], "no Portuguese (Angola) (pt-AO) text"),
    (["build", "--langs", "en,klingon", "--out", "{w}/build"], "unknown language 'klingon'"),
    (["build", "--out", "{w}/full"], "not empty"),
    (["export", "--format", "gguf", "--quant", "q9", "--out", "{w}/x.gguf"], "precision 'q9'"),
    (["bench", "--dense", "{w}/fake.gguf", "--other-langs", "ru,la"], "no Latin (la) text"),
    (["report", "{w}/missing.safetensors", "--out", "{w}/report"], "does not exist"),
]


# Runs every case through babel_edge.cli.main in one process (one interpreter start instead
# of one per case) with the model loaders replaced by a tripwire, so a case that reaches a
# load is named, not just timed out.
DRIVER = """
import contextlib, io, json, sys
import babel_edge.models, babel_edge.runtime.engines

def tripwire(*args, **kwargs):
    raise SystemExit(99)

babel_edge.models.load_model = tripwire
babel_edge.runtime.engines.open_engine = tripwire
from babel_edge.cli import main

results = []
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(args)
        except SystemExit as e:
            rc = e.code
    results.append({"rc": rc, "stderr": err.getvalue()})
print(json.dumps(results))
"""


def test_every_verb_checks_its_input_before_loading_the_model(work):
    import json

    cache = work / "cache"
    cases = [([a.format(w=work) for a in args], expect) for args, expect in CASES]
    env = dict(os.environ, BABEL_EDGE_CACHE=str(cache))
    r = subprocess.run([sys.executable, "-c", DRIVER, json.dumps([a for a, _ in cases])],
                       capture_output=True, text=True, timeout=TIMEOUT * 2, env=env, cwd=work)
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout.splitlines()[-1])
    for (args, expect), res in zip(cases, results):
        what = " ".join(args)
        assert res["rc"] != 99, f"{what}: the model started loading before the bad input was reported"
        lines = [ln for ln in res["stderr"].splitlines() if ln.strip()]
        assert res["rc"] == 2, (what, res)
        assert len(lines) == 1 and lines[0].startswith(f"babel-edge {args[0]}: error: "), (what, res)
        assert expect in lines[0], (what, lines[0])
    assert len(results) == len(cases)
    assert cache_files(cache) == [], "something was written to the model cache"


def test_prune_with_a_missing_profile_exits_before_loading(work):
    """The issue's case as a user runs it: a real process, the real embedded model."""
    cache = work / "cache"
    r = run_cli(["prune", "--profile", str(work / "missing.safetensors"), "--langs", "en,de,fr",
                 "--rate", "0.5", "--out", str(work / "pruned")], cache, work)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("babel-edge prune: error: ") and "does not exist" in lines[0]
    assert cache_files(cache) == []
    assert not (work / "pruned").exists()


def test_mixed_user_folder_is_read_for_the_asked_languages_only(work):
    """zh-TW.txt is not asked for: one note names it, and the run goes on to the next check
    (here the model, which does not exist) instead of stopping on the file."""
    cache = work / "cache"
    r = run_cli(["eval", "--langs", "en,de", "--corpus", str(work / "corpus"),
                 "--model", str(work / "no-such-model")], cache, work)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, r.stderr
    assert len(lines) == 2, r.stderr
    assert lines[0].startswith("note: ") and "zh-TW.txt" in lines[0] and "not asked for" in lines[0]
    assert lines[1].startswith("babel-edge eval: error: ") and "no-such-model" in lines[1]
    assert cache_files(cache) == []

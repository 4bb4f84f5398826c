"""What every verb shares: the output console, the help texts of shared options, and the
few helpers that turn arguments into library values. Progress goes to stderr (progress.py);
tables and results go to stdout."""
from __future__ import annotations

import sys

from rich.console import Console

out = Console()   # tables go to stdout; progress goes to stderr

MODEL_HELP = ("embedded model name (default gemma-3-270m), a .gguf file, or a local Hugging Face "
              "model directory")
CORPUS_HELP = ("your own text: a folder of <lang>.txt files named by language tag (de.txt, "
               "pt-BR.txt, zh-TW.txt; paragraphs separated by blank lines; <domain>/ subfolders "
               "for kinds of text) or a .jsonl file of {\"lang\": ..., \"text\": ...} lines "
               "(optional \"domain\", \"split\"); only the asked languages are read")
LANGS_HELP = ("comma-separated BCP-47 language tags such as en,de,pt-BR,zh-Hant (default: every "
              "corpus language; `babel-edge langs` lists them)")


def add_model(s, extra: str = "") -> None:
    s.add_argument("--model", help=MODEL_HELP + extra)


def add_corpus(s, what: str = "") -> None:
    s.add_argument("--corpus", help=CORPUS_HELP + what)


def note(msg: str) -> None:
    print(f"note: {msg}", file=sys.stderr)


def load_corpus_arg(path: str | None, langs=None):
    """The built-in corpus, or the user's (read for `langs` only when given)."""
    from ..corpus import load_corpus, load_user_corpus

    return load_user_corpus(path, langs, warn=note) if path else load_corpus()


def add_nproc(s) -> None:
    s.add_argument("--nproc", type=int, metavar="N",
                   help="run on N processes of this machine (data parallel, torch.distributed; "
                        "for several machines launch with torchrun -m babel_edge, see README)")

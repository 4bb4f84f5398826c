"""Multilingual text for profiling and evaluation.

The built-in corpus (``data/corpus.jsonl.xz``, rebuilt by
``scripts/build_corpus.py``; sources and licences in ``data/NOTICE.md``) holds
real text: LibreOffice help paragraphs aligned across languages, plus the
Universal Declaration of Human Rights for languages LibreOffice lacks. Every
language has a ``profile`` split and a disjoint ``eval`` split; the split is
decided per alignment key, so eval text is parallel across languages.

Users can bring their own text with :func:`load_user_corpus`.
"""
from __future__ import annotations

import functools
import json
import lzma
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator

from .languages import LANGUAGES, Language, UnknownLanguageError, get_language, parse_langs

__all__ = [
    "Corpus", "CorpusError", "LangStats", "Language", "LANGUAGES", "SPLITS",
    "UnknownLanguageError", "get_language", "load_corpus", "load_user_corpus", "parse_langs",
]

SPLITS = ("profile", "eval")
# User text without a split: every EVAL_EVERY-th paragraph goes to eval.
EVAL_EVERY = 5
_DATA_FILE = "corpus.jsonl.xz"


class CorpusError(ValueError):
    """Corpus input that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class LangStats:
    code: str
    name: str
    family: str
    branch: str
    script: str
    source: str
    n_paragraphs: dict[str, int]   # split -> paragraphs
    n_chars: dict[str, int]        # split -> characters


@dataclass(frozen=True)
class _Paragraph:
    key: str
    text: str


class Corpus:
    """Paragraphs per (language, split), in a fixed order."""

    def __init__(self, paragraphs: dict[tuple[str, str], list[_Paragraph]],
                 sources: dict[str, str], origin: str):
        self._paragraphs = paragraphs
        self._sources = sources
        self.origin = origin  # where the text came from, for messages and run records

    def languages(self) -> list[str]:
        return sorted(self._sources)

    def __contains__(self, lang: str) -> bool:
        return lang in self._sources

    def _check(self, lang: str, split: str) -> str:
        if split not in SPLITS:
            raise CorpusError(f"unknown split {split!r}; use 'profile' or 'eval'")
        code = get_language(lang).code
        if code not in self._sources:
            raise CorpusError(f"the {self.origin} corpus has no {LANGUAGES[code].name} ({code}) text; "
                              f"it has: {', '.join(self.languages())}")
        return code

    def texts(self, lang: str, split: str = "profile") -> list[str]:
        """The paragraphs of one language and split (a new list each call)."""
        code = self._check(lang, split)
        return [p.text for p in self._paragraphs.get((code, split), [])]

    def keys(self, lang: str, split: str = "profile") -> list[str]:
        """Alignment keys, parallel to texts(): equal keys are translations of each other."""
        code = self._check(lang, split)
        return [p.key for p in self._paragraphs.get((code, split), [])]

    def stats(self) -> list[LangStats]:
        out = []
        for code in self.languages():
            lang = LANGUAGES[code]
            ps = {s: self._paragraphs.get((code, s), []) for s in SPLITS}
            out.append(LangStats(
                code=code, name=lang.name, family=lang.family, branch=lang.branch,
                script=lang.script, source=self._sources[code],
                n_paragraphs={s: len(p) for s, p in ps.items()},
                n_chars={s: sum(len(x.text) for x in p) for s, p in ps.items()}))
        return out


def _build(rows: Iterable[tuple[str, str, str, str, str]], origin: str) -> Corpus:
    """rows of (lang, source, key, split, text) -> Corpus."""
    paragraphs: dict[tuple[str, str], list[_Paragraph]] = {}
    sources: dict[str, set[str]] = {}
    for lang, source, key, split, text in rows:
        paragraphs.setdefault((lang, split), []).append(_Paragraph(key, text))
        sources.setdefault(lang, set()).add(source)
    return Corpus(paragraphs, {l: "+".join(sorted(s)) for l, s in sources.items()}, origin)


# ------------------------------------------------------------- built-in

@functools.cache
def corpus_digest() -> str:
    """sha256 (first 16 hex digits) of the shipped corpus file: a cache key for anything
    measured on it (profiles, calibration)."""
    import hashlib

    data = resources.files(__name__).joinpath("data").joinpath(_DATA_FILE)
    return hashlib.sha256(data.read_bytes()).hexdigest()[:16]


@functools.cache
def load_corpus() -> Corpus:
    """The built-in corpus (read once per process)."""
    data = resources.files(__name__).joinpath("data").joinpath(_DATA_FILE)
    try:
        with data.open("rb") as raw, lzma.open(raw, "rt", encoding="utf-8") as f:
            rows = [(r["lang"], r["source"], r["key"], r["split"], r["text"])
                    for r in map(json.loads, f)]
    except FileNotFoundError:
        raise CorpusError(f"the built-in corpus file {data} is missing; "
                          "rebuild it with `python3 scripts/build_corpus.py`") from None
    return _build(rows, "built-in")


# ----------------------------------------------------------------- user

_BLANK_LINE = re.compile(r"\n\s*\n")


def load_user_corpus(path: str | Path, langs=None, warn=None) -> Corpus:
    """Your own text: a folder of ``<lang>.txt`` files (paragraphs separated by
    blank lines; every 5th paragraph is held out for eval) or a ``.jsonl`` file
    of ``{"lang": ..., "text": ...[, "split": "profile"|"eval"]}`` lines.

    With `langs`, only those languages are read: files and lines of other or unknown
    languages are skipped with one `warn` line naming them; an asked language that is
    missing, empty or unreadable is an error."""
    p = Path(path).expanduser()
    want = None if langs is None else set(parse_langs(langs))
    if p.is_dir():
        return _load_folder(p, want, warn)
    if p.is_file():
        if p.name.endswith((".jsonl", ".jsonl.xz")):
            return _load_jsonl(p, want, warn)
        raise CorpusError(f"corpus file {str(p)!r} is not a .jsonl file; give a .jsonl file "
                          "or a folder of <lang>.txt files")
    raise CorpusError(f"corpus path {str(p)!r} does not exist; give a folder of <lang>.txt files "
                      "or a .jsonl file")


def _user_lang(code: str, where: str) -> str:
    try:
        return get_language(code).code
    except UnknownLanguageError as e:
        raise CorpusError(f"{where}: {e}") from None


def _held_out(i: int) -> str:
    return "eval" if i % EVAL_EVERY == EVAL_EVERY - 1 else "profile"


def _skipped(warn, what: list[str], where: str) -> None:
    if what and warn:
        warn(f"{where}: skipped {len(what)} not asked for or unknown: {', '.join(what[:12])}"
             + (" …" if len(what) > 12 else ""))


def _missing(want, got, where: str) -> None:
    if want is not None and want - set(got):
        raise CorpusError(f"{where} has no text for {', '.join(sorted(want - set(got)))}; add it "
                          f"or leave the language out")


def _load_folder(folder: Path, want: set[str] | None = None, warn=None) -> Corpus:
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise CorpusError(f"corpus folder {str(folder)!r} has no <lang>.txt files; add files such as "
                          "de.txt with paragraphs separated by blank lines")
    rows, seen, skipped = [], {}, []
    for f in files:
        if want is not None:
            try:
                code = get_language(f.stem).code
            except UnknownLanguageError:
                code = None
            if code not in want:
                skipped.append(f.name)
                continue
        lang = _user_lang(f.stem, f"corpus file {f.name!r} is not named after a language code")
        if lang in seen:
            raise CorpusError(f"corpus files {seen[lang]!r} and {f.name!r} are both {lang}; merge them")
        seen[lang] = f.name
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise CorpusError(f"corpus file {str(f)!r} is not UTF-8 text; re-save it as UTF-8") from None
        except OSError as e:
            raise CorpusError(f"cannot read corpus file {str(f)!r} ({e.strerror}); check its permissions") from None
        paras = [s.strip() for s in _BLANK_LINE.split(text.replace("\r\n", "\n")) if s.strip()]
        if not paras:
            raise CorpusError(f"corpus file {str(f)!r} is empty; add paragraphs separated by blank lines "
                              "or remove the file")
        rows += [(lang, "user", f"{f.name}:{i + 1}", _held_out(i), t) for i, t in enumerate(paras)]
    _skipped(warn, skipped, f"corpus folder {folder}")
    _missing(want, seen, f"corpus folder {str(folder)!r}")
    return _build(rows, f"user ({folder})")


def _lines(path: Path) -> Iterator[str]:
    opener = lzma.open if path.name.endswith(".xz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        yield from f


def _load_jsonl(path: Path, want: set[str] | None = None, warn=None) -> Corpus:
    example = '{"lang": "de", "text": "..."}'
    rows, counts, skipped = [], {}, {}
    try:
        for n, line in enumerate(_lines(path), 1):
            if not line.strip():
                continue
            where = f"{path.name} line {n}"
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorpusError(f"{where} is not valid JSON ({e.msg}); each line must be an object "
                                  f"like {example}") from None
            if not isinstance(r, dict) or not isinstance(r.get("lang"), str) \
                    or not isinstance(r.get("text"), str):
                raise CorpusError(f"{where} needs string fields \"lang\" and \"text\", like {example}")
            if want is not None:
                try:
                    code = get_language(r["lang"]).code
                except UnknownLanguageError:
                    code = None
                if code not in want:
                    skipped[r["lang"]] = skipped.get(r["lang"], 0) + 1
                    continue
            lang = _user_lang(r["lang"], where)
            text = r["text"].strip()
            if not text:
                continue
            split = r.get("split")
            if split is None:
                # Same rule as the folder format, counted per language.
                split = _held_out(counts.get(lang, 0))
                counts[lang] = counts.get(lang, 0) + 1
            elif split not in SPLITS:
                raise CorpusError(f"{where} has split {split!r}; use \"profile\" or \"eval\" or leave it out")
            rows.append((lang, "user", str(r.get("key", f"{path.name}:{n}")), split, text))
    except UnicodeDecodeError:
        raise CorpusError(f"corpus file {str(path)!r} is not UTF-8 text; re-save it as UTF-8") from None
    except (OSError, lzma.LZMAError, EOFError) as e:
        raise CorpusError(f"cannot read corpus file {str(path)!r} ({e}); check the file") from None
    _skipped(warn, [f"{k} ({n} lines)" for k, n in skipped.items()], f"corpus file {path.name}")
    if not rows:
        raise CorpusError(f"corpus file {str(path)!r} has no text"
                          + (" in the asked languages" if want is not None else "")
                          + f"; add lines like {example}")
    _missing(want, {r[0] for r in rows}, f"corpus file {str(path)!r}")
    return _build(rows, f"user ({path})")

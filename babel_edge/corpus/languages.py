"""Language registry: BCP-47 language tags with name, family, branch and script.

Every language identifier in babel-edge is a BCP-47 tag: ``en``, ``pt-BR``, ``zh-Hant``,
``sr-Latn``. Tags are parsed and normalised by `langcodes` (IANA subtag registry and
CLDR data), not by a table written here; only what no library provides — the family
and branch of each language, for the reports — is written by hand (`_ROWS`).

Normalisation (:func:`canonical_tag`, applied wherever a tag comes in: ``--langs``,
corpus file names, JSONL ``lang`` fields):

* case and separators: ``ZH_tw`` -> ``zh-TW`` -> (below) ``zh-Hant-TW``;
* aliases to the shortest code: ISO 639-2/3 codes and deprecated subtags
  (``deu``/``ger`` -> ``de``, ``iw`` -> ``he``, ``cmn`` -> ``zh``, ``arb`` -> ``ar``,
  ``pes`` -> ``fa``, ``sh`` -> ``sr-Latn``, ``tl`` -> ``fil``);
* a script subtag that is the language's only usual script (IANA Suppress-Script) is
  dropped: ``en-Latn`` -> ``en``, ``ja-Jpan`` -> ``ja``;
* a language written in several scripts (no Suppress-Script: zh, sr, uz, az, mn, ku, ...)
  whose tag names a region but no script gets that region's likely script (CLDR likely
  subtags), because the script decides the characters and so the tokens:
  ``zh-TW`` -> ``zh-Hant-TW``, ``zh-CN`` -> ``zh-Hans-CN``, ``sr-ME`` -> ``sr-Latn-ME``;
* a bare language stays bare: ``zh`` means "Chinese, as the corpus holds it", which
  :func:`match_tag` decides.

Matching (:func:`match_tag`, used by the corpus and by anything keyed by language) maps an
asked tag to one of the tags a corpus, profile or plan holds: the same tag; else the one
that means the same under CLDR likely subtags (``zh`` -> ``zh-Hans``, ``pt`` -> ``pt-BR``,
``zh-Hant`` -> ``zh-Hant-TW``, ``de-DE`` -> ``de``); else the asked tag without its region
(RFC 4647 lookup: ``en-GB`` -> ``en``, ``zh-Hant-HK`` -> ``zh-Hant``). A script is never
dropped: ``zh-Hant`` never matches Simplified text, ``pt-PT`` never matches ``pt-BR``.

The registry (:func:`get_language`) answers for any tag whose language is in `_ROWS`:
``code`` (the canonical tag), ``name`` (``Chinese (Traditional, Taiwan)``), ``family`` and
``branch`` (per language), ``script`` (ISO 15924: the tag's own script, else the likely
one: ``Latn``, ``Cyrl``, ``Hans``, ``Hant``, ``Jpan``, ``Kore``, ``Arab`` ...; it decides the
characters a vocabulary must keep — see ``unicode_scripts``), ``region``.
Reports compare measured language similarity against family/branch and tokenizer
behaviour against script, so keep `_ROWS` accurate when adding languages.
"""
from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

import langcodes
from langcodes.data_dicts import DEFAULT_SCRIPTS  # IANA Suppress-Script, per language

if TYPE_CHECKING:
    from . import Corpus


class UnknownLanguageError(ValueError):
    """A language tag the registry does not know; the message suggests close ones."""


# Scripts that are written with characters of several Unicode scripts (ISO 15924 aliases):
# what a vocabulary must keep for text in them.
_UNICODE_SCRIPTS = {
    "Jpan": ("Hani", "Hira", "Kana"),
    "Kore": ("Hang", "Hani"),
    "Hans": ("Hani",),
    "Hant": ("Hani",),
    "Hanb": ("Hani", "Bopo"),
}


@dataclass(frozen=True)
class Language:
    code: str            # canonical BCP-47 tag: "de", "pt-BR", "zh-Hant-TW"
    name: str            # "German", "Portuguese (Brazil)", "Chinese (Traditional, Taiwan)"
    family: str          # top-level family (Glottolog-style); isolates: "Isolate"
    branch: str
    script: str          # ISO 15924 code: the tag's script subtag, else the likely script
    base: str = ""       # the language subtag: "pt" for "pt-BR"
    region: str | None = None   # region subtag, if the tag has one

    @property
    def script_name(self) -> str:
        return langcodes.Language.make(script=self.script).script_name() or self.script

    @property
    def unicode_scripts(self) -> tuple[str, ...]:
        """The Unicode scripts (ISO 15924 codes, usable as ``\\p{Script=...}`` in the
        `regex` module) whose characters this language's text is written with."""
        return _UNICODE_SCRIPTS.get(self.script, (self.script,))


IE = "Indo-European"
_ROWS = [
    # language subtag, name, family, branch (the script comes from CLDR: see _script)
    ("en", "English", IE, "Germanic"),
    ("de", "German", IE, "Germanic"),
    ("nl", "Dutch", IE, "Germanic"),
    ("da", "Danish", IE, "Germanic"),
    ("sv", "Swedish", IE, "Germanic"),
    ("nb", "Norwegian Bokmål", IE, "Germanic"),
    ("is", "Icelandic", IE, "Germanic"),
    ("af", "Afrikaans", IE, "Germanic"),
    ("yi", "Yiddish", IE, "Germanic"),
    ("fr", "French", IE, "Romance"),
    ("es", "Spanish", IE, "Romance"),
    ("it", "Italian", IE, "Romance"),
    ("pt", "Portuguese", IE, "Romance"),
    ("ca", "Catalan", IE, "Romance"),
    ("gl", "Galician", IE, "Romance"),
    ("ro", "Romanian", IE, "Romance"),
    ("la", "Latin", IE, "Italic"),
    ("ru", "Russian", IE, "Slavic"),
    ("uk", "Ukrainian", IE, "Slavic"),
    ("be", "Belarusian", IE, "Slavic"),
    ("bg", "Bulgarian", IE, "Slavic"),
    ("mk", "Macedonian", IE, "Slavic"),
    ("sr", "Serbian", IE, "Slavic"),
    ("hr", "Croatian", IE, "Slavic"),
    ("bs", "Bosnian", IE, "Slavic"),
    ("sl", "Slovenian", IE, "Slavic"),
    ("pl", "Polish", IE, "Slavic"),
    ("cs", "Czech", IE, "Slavic"),
    ("sk", "Slovak", IE, "Slavic"),
    ("lt", "Lithuanian", IE, "Baltic"),
    ("lv", "Latvian", IE, "Baltic"),
    ("ga", "Irish", IE, "Celtic"),
    ("cy", "Welsh", IE, "Celtic"),
    ("el", "Greek", IE, "Hellenic"),
    ("sq", "Albanian", IE, "Albanian"),
    ("hy", "Armenian", IE, "Armenian"),
    ("hi", "Hindi", IE, "Indo-Aryan"),
    ("ur", "Urdu", IE, "Indo-Aryan"),
    ("bn", "Bengali", IE, "Indo-Aryan"),
    ("mr", "Marathi", IE, "Indo-Aryan"),
    ("ne", "Nepali", IE, "Indo-Aryan"),
    ("gu", "Gujarati", IE, "Indo-Aryan"),
    ("pa", "Punjabi", IE, "Indo-Aryan"),
    ("si", "Sinhala", IE, "Indo-Aryan"),
    ("fa", "Persian", IE, "Iranian"),
    ("ps", "Pashto", IE, "Iranian"),
    ("ku", "Kurdish (Kurmanji)", IE, "Iranian"),
    ("zh", "Chinese", "Sino-Tibetan", "Sinitic"),
    ("my", "Burmese", "Sino-Tibetan", "Lolo-Burmese"),
    ("bo", "Tibetan", "Sino-Tibetan", "Tibetic"),
    ("ja", "Japanese", "Japonic", "Japanese"),
    ("ko", "Korean", "Koreanic", "Korean"),
    ("fi", "Finnish", "Uralic", "Finnic"),
    ("et", "Estonian", "Uralic", "Finnic"),
    ("hu", "Hungarian", "Uralic", "Ugric"),
    ("tr", "Turkish", "Turkic", "Oghuz"),
    ("az", "Azerbaijani", "Turkic", "Oghuz"),
    ("kk", "Kazakh", "Turkic", "Kipchak"),
    ("uz", "Uzbek", "Turkic", "Karluk"),
    ("mn", "Mongolian", "Mongolic", "Mongolian"),
    ("ka", "Georgian", "Kartvelian", "Karto-Zan"),
    ("eu", "Basque", "Isolate", "Basque"),
    ("id", "Indonesian", "Austronesian", "Malayo-Polynesian"),
    ("ms", "Malay", "Austronesian", "Malayo-Polynesian"),
    ("fil", "Filipino (Tagalog)", "Austronesian", "Malayo-Polynesian"),
    ("jv", "Javanese", "Austronesian", "Malayo-Polynesian"),
    ("mg", "Malagasy", "Austronesian", "Malayo-Polynesian"),
    ("vi", "Vietnamese", "Austroasiatic", "Vietic"),
    ("km", "Khmer", "Austroasiatic", "Khmeric"),
    ("th", "Thai", "Kra-Dai", "Tai"),
    ("lo", "Lao", "Kra-Dai", "Tai"),
    ("ta", "Tamil", "Dravidian", "South Dravidian"),
    ("ml", "Malayalam", "Dravidian", "South Dravidian"),
    ("kn", "Kannada", "Dravidian", "South Dravidian"),
    ("te", "Telugu", "Dravidian", "South-Central Dravidian"),
    ("ar", "Arabic", "Afro-Asiatic", "Semitic"),
    ("he", "Hebrew", "Afro-Asiatic", "Semitic"),
    ("mt", "Maltese", "Afro-Asiatic", "Semitic"),
    ("am", "Amharic", "Afro-Asiatic", "Semitic"),
    ("ti", "Tigrinya", "Afro-Asiatic", "Semitic"),
    ("om", "Oromo", "Afro-Asiatic", "Cushitic"),
    ("so", "Somali", "Afro-Asiatic", "Cushitic"),
    ("ha", "Hausa", "Afro-Asiatic", "Chadic"),
    ("sw", "Swahili", "Niger-Congo", "Bantu"),
    ("zu", "Zulu", "Niger-Congo", "Bantu"),
    ("xh", "Xhosa", "Niger-Congo", "Bantu"),
    ("rw", "Kinyarwanda", "Niger-Congo", "Bantu"),
    ("yo", "Yoruba", "Niger-Congo", "Volta-Niger"),
    ("ig", "Igbo", "Niger-Congo", "Volta-Niger"),
]
_TABLE = {row[0]: row for row in _ROWS}

# Macrolanguage codes whose text the table files under one member language; only used to
# suggest the member, never accepted silently ("no" could be Bokmål or Nynorsk).
_MEMBER_HINTS = {"no": "nb"}


def _parse(tag: str) -> langcodes.Language:
    """langcodes' parse of a normalised tag, or UnknownLanguageError."""
    text = str(tag).strip().replace("_", "-")
    if not text:
        raise UnknownLanguageError("empty language tag; give a BCP-47 tag such as en, pt-BR or zh-Hant")
    try:
        return langcodes.Language.get(langcodes.standardize_tag(text, macro=True), normalize=True)
    except (langcodes.tag_parser.LanguageTagError, ValueError):
        raise _unknown(str(tag)) from None


def _script(lang: langcodes.Language) -> str:
    """The script subtag, else the likely script for the language (and region)."""
    return lang.script or lang.maximize().script or "Zyyy"


def _known_subtag(name: str | None) -> bool:
    """A script or region subtag langcodes can name (None: the tag has none)."""
    return name is None or not name.startswith(("Unknown", "Private"))


@functools.lru_cache(maxsize=4096)
def canonical_tag(tag: str) -> str:
    """The normalised form of a BCP-47 tag (see the module docstring); UnknownLanguageError
    for text that is not a tag of a language in the table, with suggestions."""
    lang = _parse(tag)
    if lang.language not in _TABLE or not _known_subtag(lang.script_name()) \
            or not _known_subtag(lang.territory_name()):
        raise _unknown(str(tag), lang)
    if lang.script and DEFAULT_SCRIPTS.get(lang.language) == lang.script:
        lang = lang.update_dict({"script": None})          # en-Latn -> en
    elif not lang.script and lang.territory and not DEFAULT_SCRIPTS.get(lang.language):
        lang = lang.update_dict({"script": lang.maximize().script})   # zh-TW -> zh-Hant-TW
    return lang.to_tag()


@functools.lru_cache(maxsize=4096)
def get_language(tag: str) -> Language:
    """The registry entry for a BCP-47 tag (any case, '_' or '-')."""
    code = canonical_tag(tag)
    lang = langcodes.Language.get(code)
    base, name, family, branch = _TABLE[lang.language]
    extra = [x for x in ((lang.script_name() if lang.script else None), lang.territory_name(),
                         *(lang.variants or [])) if x]
    return Language(code=code, name=f"{name} ({', '.join(extra)})" if extra else name,
                    family=family, branch=branch, script=_script(lang), base=base,
                    region=lang.territory)


# Every language of the table under its bare tag ("zh" is Chinese in its likely script).
LANGUAGES: dict[str, Language] = {row[0]: get_language(row[0]) for row in _ROWS}


@functools.lru_cache(maxsize=4096)
def _maximized(tag: str) -> str:
    """The tag with CLDR's likely script and region; itself if it is no tag at all (a
    profile may hold any label)."""
    try:
        return langcodes.Language.get(tag).maximize().to_tag()
    except (langcodes.tag_parser.LanguageTagError, ValueError):
        return tag


def match_tag(tag: str, available: Iterable[str]) -> str | None:
    """The tag among `available` (canonical tags, e.g. a corpus's or a profile's languages)
    that serves an ask for `tag`, or None. In order: the same tag; the one that means the
    same under CLDR likely subtags (``zh`` -> ``zh-Hans``, ``pt`` -> ``pt-BR``, ``de-DE`` ->
    ``de``; if several, the shortest); the asked tag without its region (``en-GB`` ->
    ``en``), never without its script."""
    code = canonical_tag(tag)
    avail = list(dict.fromkeys(available))
    if code in avail:
        return code
    want = _maximized(code)
    same = sorted((a for a in avail if _maximized(a) == want), key=lambda a: (len(a), a))
    if same:
        return same[0]
    lang = langcodes.Language.get(code)
    if lang.territory or lang.variants:
        # Only to a tag that exists as it is: "pt-PT" -> "pt" would otherwise come back as
        # "pt-BR" through the likely subtags, and regional vocabularies differ.
        shorter = lang.update_dict({"territory": None, "variants": None}).to_tag()
        if shorter in avail:
            return shorter
    return None


def parse_langs(spec: str | Iterable[str], corpus: "Corpus | None" = None) -> list[str]:
    """'en,de, zh-TW' (or a list of tags) -> ['en', 'de', 'zh-Hant-TW']: validated,
    normalised, deduplicated, in order. With `corpus`, each tag is also resolved to the
    corpus's own tag (``zh`` -> ``zh-Hans`` in the built-in corpus), and a language the
    corpus lacks is an error that says what it has."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    codes = [canonical_tag(p) for p in parts if str(p).strip()]
    if not codes:
        raise UnknownLanguageError(f"no language tags in {spec!r}; give a comma-separated list "
                                   f"such as 'en,de,fr'")
    if corpus is not None:
        codes = [corpus.resolve(c) for c in codes]
    return list(dict.fromkeys(codes))


def language_label(tag: str) -> str:
    """'zh-Hant (Chinese (Traditional))' for messages; the tag itself if it is unknown."""
    try:
        return f"{tag} ({get_language(tag).name})"
    except UnknownLanguageError:
        return tag


# ------------------------------------------------------------------ suggestions

def _suggest(query: str) -> list[str]:
    """Known tags close to `query`, best first (by tag, by name, by spelling)."""
    q = query.strip().replace("_", "-")
    low = q.lower()
    found: list[str] = []
    primary = low.split("-")[0]
    if primary in _TABLE:
        found.append(primary)
    if len(low) >= 3:
        try:                                          # "english", "German", "arabic"
            hit = langcodes.find(q).language
            if hit in _TABLE:
                return [hit]
        except LookupError:
            pass
        names = {row[1].lower(): row[0] for row in _ROWS}
        found += [names[n] for n in names if n.startswith(low)]
        found += [names[n] for n in difflib.get_close_matches(low, names, n=3, cutoff=0.6)]
    found += difflib.get_close_matches(primary, _TABLE, n=3, cutoff=0.5)
    return list(dict.fromkeys(found))[:3]


def _unknown(query: str, parsed: langcodes.Language | None = None) -> UnknownLanguageError:
    if parsed is not None and parsed.language in _TABLE:       # a known language, bad subtags
        bad = ([f"script {parsed.script!r}"] if not _known_subtag(parsed.script_name()) else []) \
            + ([f"region {parsed.territory!r}"] if not _known_subtag(parsed.territory_name()) else [])
        return UnknownLanguageError(
            f"unknown language {query!r}: {' and '.join(bad) or 'a subtag'} is not known; "
            f"did you mean '{parsed.language}' ({_TABLE[parsed.language][1]})?")
    known = (parsed is not None and parsed.language_name()
             and not parsed.language_name().startswith("Unknown"))
    hints = ([_MEMBER_HINTS[parsed.language]] if known and parsed.language in _MEMBER_HINTS
             else [] if known else _suggest(query))
    what = (f"language {query!r} ({parsed.language_name()}) is not in babel-edge's language "
            f"table (family, script)" if known else f"unknown language {query!r}")
    if hints:
        hint = " or ".join(f"'{c}' ({_TABLE[c][1]})" for c in hints)
        return UnknownLanguageError(f"{what}; did you mean {hint}?")
    return UnknownLanguageError(
        f"{what}; use a BCP-47 tag such as en, de, pt-BR, zh-Hans, zh-TW or sr-Latn "
        f"(`babel-edge langs` lists the corpus languages)")

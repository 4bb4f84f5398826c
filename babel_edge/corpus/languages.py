"""Language registry: code, name, family, branch and script, written by hand.

Codes are ISO 639-1 where one exists. Family is the top-level genealogical
family (Glottolog-style); language isolates get family "Isolate". Script is
the one the corpus text (and most web text) uses for that language.
Reports compare measured language similarity against `family`/`branch`, and
tokenizer behaviour against `script`, so keep both accurate when adding rows.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    family: str
    branch: str
    script: str


class UnknownLanguageError(ValueError):
    """A language code the registry does not know; the message suggests close ones."""


IE = "Indo-European"
_ROWS = [
    # code, name, family, branch, script
    ("en", "English", IE, "Germanic", "Latin"),
    ("de", "German", IE, "Germanic", "Latin"),
    ("nl", "Dutch", IE, "Germanic", "Latin"),
    ("da", "Danish", IE, "Germanic", "Latin"),
    ("sv", "Swedish", IE, "Germanic", "Latin"),
    ("nb", "Norwegian Bokmål", IE, "Germanic", "Latin"),
    ("is", "Icelandic", IE, "Germanic", "Latin"),
    ("af", "Afrikaans", IE, "Germanic", "Latin"),
    ("yi", "Yiddish", IE, "Germanic", "Hebrew"),
    ("fr", "French", IE, "Romance", "Latin"),
    ("es", "Spanish", IE, "Romance", "Latin"),
    ("it", "Italian", IE, "Romance", "Latin"),
    ("pt", "Portuguese", IE, "Romance", "Latin"),
    ("ca", "Catalan", IE, "Romance", "Latin"),
    ("gl", "Galician", IE, "Romance", "Latin"),
    ("ro", "Romanian", IE, "Romance", "Latin"),
    ("la", "Latin", IE, "Italic", "Latin"),
    ("ru", "Russian", IE, "Slavic", "Cyrillic"),
    ("uk", "Ukrainian", IE, "Slavic", "Cyrillic"),
    ("be", "Belarusian", IE, "Slavic", "Cyrillic"),
    ("bg", "Bulgarian", IE, "Slavic", "Cyrillic"),
    ("mk", "Macedonian", IE, "Slavic", "Cyrillic"),
    ("sr", "Serbian", IE, "Slavic", "Cyrillic"),
    ("hr", "Croatian", IE, "Slavic", "Latin"),
    ("sl", "Slovenian", IE, "Slavic", "Latin"),
    ("pl", "Polish", IE, "Slavic", "Latin"),
    ("cs", "Czech", IE, "Slavic", "Latin"),
    ("sk", "Slovak", IE, "Slavic", "Latin"),
    ("lt", "Lithuanian", IE, "Baltic", "Latin"),
    ("lv", "Latvian", IE, "Baltic", "Latin"),
    ("ga", "Irish", IE, "Celtic", "Latin"),
    ("cy", "Welsh", IE, "Celtic", "Latin"),
    ("el", "Greek", IE, "Hellenic", "Greek"),
    ("sq", "Albanian", IE, "Albanian", "Latin"),
    ("hy", "Armenian", IE, "Armenian", "Armenian"),
    ("hi", "Hindi", IE, "Indo-Aryan", "Devanagari"),
    ("ur", "Urdu", IE, "Indo-Aryan", "Arabic"),
    ("bn", "Bengali", IE, "Indo-Aryan", "Bengali"),
    ("mr", "Marathi", IE, "Indo-Aryan", "Devanagari"),
    ("ne", "Nepali", IE, "Indo-Aryan", "Devanagari"),
    ("gu", "Gujarati", IE, "Indo-Aryan", "Gujarati"),
    ("pa", "Punjabi", IE, "Indo-Aryan", "Gurmukhi"),
    ("si", "Sinhala", IE, "Indo-Aryan", "Sinhala"),
    ("fa", "Persian", IE, "Iranian", "Arabic"),
    ("ps", "Pashto", IE, "Iranian", "Arabic"),
    ("ku", "Kurdish (Kurmanji)", IE, "Iranian", "Latin"),
    ("zh", "Chinese", "Sino-Tibetan", "Sinitic", "Han"),
    ("my", "Burmese", "Sino-Tibetan", "Lolo-Burmese", "Myanmar"),
    ("bo", "Tibetan", "Sino-Tibetan", "Tibetic", "Tibetan"),
    ("ja", "Japanese", "Japonic", "Japanese", "Japanese"),
    ("ko", "Korean", "Koreanic", "Korean", "Hangul"),
    ("fi", "Finnish", "Uralic", "Finnic", "Latin"),
    ("et", "Estonian", "Uralic", "Finnic", "Latin"),
    ("hu", "Hungarian", "Uralic", "Ugric", "Latin"),
    ("tr", "Turkish", "Turkic", "Oghuz", "Latin"),
    ("az", "Azerbaijani", "Turkic", "Oghuz", "Latin"),
    ("kk", "Kazakh", "Turkic", "Kipchak", "Cyrillic"),
    ("uz", "Uzbek", "Turkic", "Karluk", "Latin"),
    ("mn", "Mongolian", "Mongolic", "Mongolian", "Cyrillic"),
    ("ka", "Georgian", "Kartvelian", "Karto-Zan", "Georgian"),
    ("eu", "Basque", "Isolate", "Basque", "Latin"),
    ("id", "Indonesian", "Austronesian", "Malayo-Polynesian", "Latin"),
    ("ms", "Malay", "Austronesian", "Malayo-Polynesian", "Latin"),
    ("tl", "Tagalog", "Austronesian", "Malayo-Polynesian", "Latin"),
    ("jv", "Javanese", "Austronesian", "Malayo-Polynesian", "Latin"),
    ("mg", "Malagasy", "Austronesian", "Malayo-Polynesian", "Latin"),
    ("vi", "Vietnamese", "Austroasiatic", "Vietic", "Latin"),
    ("km", "Khmer", "Austroasiatic", "Khmeric", "Khmer"),
    ("th", "Thai", "Kra-Dai", "Tai", "Thai"),
    ("lo", "Lao", "Kra-Dai", "Tai", "Lao"),
    ("ta", "Tamil", "Dravidian", "South Dravidian", "Tamil"),
    ("ml", "Malayalam", "Dravidian", "South Dravidian", "Malayalam"),
    ("kn", "Kannada", "Dravidian", "South Dravidian", "Kannada"),
    ("te", "Telugu", "Dravidian", "South-Central Dravidian", "Telugu"),
    ("ar", "Arabic", "Afro-Asiatic", "Semitic", "Arabic"),
    ("he", "Hebrew", "Afro-Asiatic", "Semitic", "Hebrew"),
    ("mt", "Maltese", "Afro-Asiatic", "Semitic", "Latin"),
    ("am", "Amharic", "Afro-Asiatic", "Semitic", "Ethiopic"),
    ("ti", "Tigrinya", "Afro-Asiatic", "Semitic", "Ethiopic"),
    ("om", "Oromo", "Afro-Asiatic", "Cushitic", "Latin"),
    ("so", "Somali", "Afro-Asiatic", "Cushitic", "Latin"),
    ("ha", "Hausa", "Afro-Asiatic", "Chadic", "Latin"),
    ("sw", "Swahili", "Niger-Congo", "Bantu", "Latin"),
    ("zu", "Zulu", "Niger-Congo", "Bantu", "Latin"),
    ("xh", "Xhosa", "Niger-Congo", "Bantu", "Latin"),
    ("rw", "Kinyarwanda", "Niger-Congo", "Bantu", "Latin"),
    ("yo", "Yoruba", "Niger-Congo", "Volta-Niger", "Latin"),
    ("ig", "Igbo", "Niger-Congo", "Volta-Niger", "Latin"),
]

LANGUAGES: dict[str, Language] = {row[0]: Language(*row) for row in _ROWS}

# ISO 639-2/3 codes people type instead of the two-letter ones; used only to
# suggest the right code, never accepted silently.
_ISO3 = {
    "eng": "en", "deu": "de", "ger": "de", "fra": "fr", "fre": "fr", "spa": "es",
    "ita": "it", "por": "pt", "nld": "nl", "dut": "nl", "dan": "da", "swe": "sv",
    "rus": "ru", "ukr": "uk", "pol": "pl", "ces": "cs", "cze": "cs", "slk": "sk",
    "ell": "el", "gre": "el", "hin": "hi", "urd": "ur", "ben": "bn", "fas": "fa",
    "per": "fa", "pes": "fa", "zho": "zh", "chi": "zh", "cmn": "zh", "jpn": "ja",
    "kor": "ko", "fin": "fi", "est": "et", "hun": "hu", "tur": "tr", "ind": "id",
    "msa": "ms", "vie": "vi", "khm": "km", "tha": "th", "tam": "ta", "tel": "te",
    "ara": "ar", "arb": "ar", "heb": "he", "amh": "am", "orm": "om", "gaz": "om",
    "hau": "ha", "swa": "sw", "swh": "sw", "zul": "zu", "yor": "yo", "eus": "eu",
    "baq": "eu", "kat": "ka", "geo": "ka",
}


def _normalise(code: str) -> str:
    return code.strip().lower().replace("_", "-")


def _suggest(query: str) -> list[str]:
    """Known codes close to `query`, best first (by code, ISO 639-2/3 code or name)."""
    found: list[str] = []
    primary = query.split("-")[0]
    if primary in LANGUAGES:          # "pt-br", "zh-cn"
        found.append(primary)
    if query in _ISO3:                # "ger", "deu"
        found.append(_ISO3[query])
    names = {lang.name.lower(): code for code, lang in LANGUAGES.items()}
    found += [names[n] for n in names if n.startswith(query) and len(query) >= 3]
    found += [names[n] for n in difflib.get_close_matches(query, names, n=3, cutoff=0.6)]
    found += difflib.get_close_matches(query, LANGUAGES, n=3, cutoff=0.5)
    return list(dict.fromkeys(found))[:3]


def get_language(code: str) -> Language:
    """The registry entry for an ISO 639-1 code (case-insensitive)."""
    key = _normalise(str(code))
    if key in LANGUAGES:
        return LANGUAGES[key]
    hints = _suggest(key)
    if hints:
        hint = " or ".join(f"'{c}' ({LANGUAGES[c].name})" for c in hints)
        raise UnknownLanguageError(f"unknown language {code!r}; did you mean {hint}?")
    raise UnknownLanguageError(
        f"unknown language {code!r}; use a two-letter ISO 639-1 code such as "
        f"{', '.join(sorted(LANGUAGES)[:12])}, ... (`babel-edge langs` lists the corpus languages)")


def parse_langs(spec: str | Iterable[str]) -> list[str]:
    """'en,de, fr' (or a list of codes) -> ['en', 'de', 'fr']: validated, deduplicated, in order."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    codes = [get_language(p).code for p in parts if str(p).strip()]
    if not codes:
        raise UnknownLanguageError(f"no language codes in {spec!r}; give a comma-separated list such as 'en,de,fr'")
    return list(dict.fromkeys(codes))

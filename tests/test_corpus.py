"""The built-in corpus, the language registry and user corpora (fast, offline)."""
import json
import lzma
import unicodedata
from collections import defaultdict

import pytest

from babel_edge.corpus import (LANGUAGES, SPLITS, CorpusError, UnknownLanguageError,
                               get_language, load_corpus, load_user_corpus, parse_langs)

# Languages whose LibreOffice text is chosen from the same keys (build_corpus.CORE).
CORE = ["en", "de", "fr", "es", "ru", "pl", "ja", "zh", "ko", "fi", "hu", "tr",
        "id", "vi", "eu", "km", "om"]


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


@pytest.fixture(scope="module")
def records():
    """The raw shipped rows, to check what the API hides (keys, sources)."""
    from importlib import resources
    data = resources.files("babel_edge.corpus").joinpath("data").joinpath("corpus.jsonl.xz")
    with data.open("rb") as raw, lzma.open(raw, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# ------------------------------------------------------------ built-in corpus

def test_breadth_of_languages_and_families(corpus):
    langs = corpus.languages()
    assert langs == sorted(langs)
    assert len(langs) >= 20
    assert len({LANGUAGES[c].family for c in langs}) >= 8
    for code in CORE + ["ar", "hi", "sw", "he", "am"]:
        assert code in langs, code


def test_every_corpus_language_is_in_the_table(corpus):
    for code in corpus.languages():
        assert code in LANGUAGES


def test_records_are_well_formed(records):
    seen = set()
    for r in records:
        assert set(r) == {"lang", "source", "key", "split", "text"}
        assert r["source"] in ("libreoffice", "udhr") and r["split"] in SPLITS
        assert r["lang"] != "en" or r["source"] == "libreoffice"
        assert r["text"] == r["text"].strip() and r["text"]
        assert (r["lang"], r["key"]) not in seen
        seen.add((r["lang"], r["key"]))


def test_each_language_has_both_splits_and_they_are_disjoint(corpus):
    for code in corpus.languages():
        profile, evals = corpus.texts(code, "profile"), corpus.texts(code, "eval")
        assert len(profile) >= 15 and len(evals) >= 4, code
        assert not set(profile) & set(evals), code
        assert not set(corpus.keys(code, "profile")) & set(corpus.keys(code, "eval")), code
        # exact duplicates were removed within a language
        assert len(set(profile + evals)) == len(profile) + len(evals), code


def test_split_is_decided_per_key(records):
    split_of = defaultdict(set)
    for r in records:
        split_of[(r["source"], r["key"])].add(r["split"])
    assert all(len(s) == 1 for s in split_of.values())


def test_eval_keys_parallel_across_libreoffice_languages(corpus):
    core_eval = [set(corpus.keys(c, "eval")) for c in CORE]
    assert all(k == core_eval[0] for k in core_eval), "core languages must share their eval keys"
    assert len(core_eval[0]) >= 300
    # the extra LibreOffice languages share nearly all of them too
    for code in ("it", "pt", "nl", "cs", "el", "da"):
        if code in corpus:
            assert len(set(corpus.keys(code, "eval")) & core_eval[0]) >= 0.9 * len(core_eval[0])


def test_udhr_eval_articles_are_parallel(records):
    by_lang = defaultdict(set)
    for r in records:
        if r["source"] == "udhr" and r["split"] == "eval":
            by_lang[r["lang"]].add(r["key"])
    assert {"ar", "hi", "sw", "he", "am"} <= set(by_lang)
    assert len(set(map(frozenset, by_lang.values()))) == 1
    assert len(next(iter(by_lang.values()))) >= 4


def test_sizes_are_capped(corpus):
    for s in corpus.stats():
        if s.source == "libreoffice" and s.code != "hi":
            assert 50_000 < s.n_chars["profile"] < 400_000, s
            assert 10_000 < s.n_chars["eval"] < 100_000, s
        else:
            assert s.n_chars["eval"] > 1_000, s


def test_stats_rows(corpus):
    stats = {s.code: s for s in corpus.stats()}
    de = stats["de"]
    assert (de.name, de.family, de.branch, de.script, de.source) == (
        "German", "Indo-European", "Germanic", "Latin", "libreoffice")
    assert stats["ar"].source == "udhr"
    # Hindi: the partly translated LibreOffice help plus the UDHR
    assert stats["hi"].source == "libreoffice+udhr"
    assert de.n_paragraphs["eval"] == len(corpus.texts("de", "eval"))


def _share(text, lo, hi):
    letters = [c for c in text if c.isalpha()]
    return sum(lo <= ord(c) <= hi for c in letters) / max(1, len(letters))


@pytest.mark.parametrize("code, lo, hi, least", [
    ("ru", 0x0400, 0x04FF, 0.8),   # Cyrillic
    ("uk", 0x0400, 0x04FF, 0.9),
    ("el", 0x0370, 0x03FF, 0.8),   # Greek
    ("zh", 0x4E00, 0x9FFF, 0.8),   # CJK ideographs
    ("ko", 0xAC00, 0xD7AF, 0.8),   # Hangul syllables
    ("km", 0x1780, 0x17FF, 0.8),   # Khmer
    ("ar", 0x0600, 0x06FF, 0.95),  # Arabic
    ("he", 0x0590, 0x05FF, 0.95),  # Hebrew
    ("hi", 0x0900, 0x097F, 0.9),   # Devanagari
    ("am", 0x1200, 0x137F, 0.95),  # Ethiopic
    ("th", 0x0E00, 0x0E7F, 0.95),  # Thai
])
def test_text_is_in_the_languages_script(corpus, code, lo, hi, least):
    text = "".join(corpus.texts(code, "profile") + corpus.texts(code, "eval"))
    assert _share(text, lo, hi) >= least, code


def test_japanese_uses_kana(corpus):
    text = "".join(corpus.texts("ja", "eval"))
    kana = sum(0x3040 <= ord(c) <= 0x30FF for c in text)
    assert kana > 0.2 * len(text)


def test_untranslated_english_is_rare(corpus):
    en = dict(zip(corpus.keys("en", "eval"), corpus.texts("en", "eval")))
    for code in CORE[1:]:
        other = dict(zip(corpus.keys(code, "eval"), corpus.texts(code, "eval")))
        same = sum(other[k] == en.get(k) for k in other)
        assert same == 0, code
    # and a crude English detector finds (almost) nothing in the Latin-script languages
    function_words = {"the", "and", "you", "that", "this", "with", "which"}
    for code in ("de", "fr", "es", "pl", "fi", "hu", "tr", "id", "vi", "eu", "om"):
        texts = corpus.texts(code, "profile")
        englishy = sum(len(function_words & set(t.lower().split())) >= 3 for t in texts)
        assert englishy <= 0.005 * len(texts), code


def test_text_is_clean(corpus):
    for code in corpus.languages():
        for t in corpus.texts(code, "eval"):
            assert "  " not in t and "\t" not in t, (code, t)
            assert unicodedata.is_normalized("NFC", t), code
            assert "not found]" not in t, (code, t)


def test_unknown_and_missing_languages(corpus):
    with pytest.raises(UnknownLanguageError, match="did you mean 'de'"):
        corpus.texts("ger", "eval")
    with pytest.raises(CorpusError, match="has no .*Latin.*it has: "):
        corpus.texts("la", "eval")
    with pytest.raises(CorpusError, match="profile' or 'eval'"):
        corpus.texts("de", "train")


def test_load_corpus_is_cached():
    assert load_corpus() is load_corpus()


# ------------------------------------------------------------------ registry

@pytest.mark.parametrize("code, family, branch, script", [
    ("de", "Indo-European", "Germanic", "Latin"),
    ("ru", "Indo-European", "Slavic", "Cyrillic"),
    ("hi", "Indo-European", "Indo-Aryan", "Devanagari"),
    ("ja", "Japonic", "Japanese", "Japanese"),
    ("fi", "Uralic", "Finnic", "Latin"),
    ("hu", "Uralic", "Ugric", "Latin"),
    ("ar", "Afro-Asiatic", "Semitic", "Arabic"),
    ("he", "Afro-Asiatic", "Semitic", "Hebrew"),
    ("am", "Afro-Asiatic", "Semitic", "Ethiopic"),
    ("om", "Afro-Asiatic", "Cushitic", "Latin"),
    ("zh", "Sino-Tibetan", "Sinitic", "Han"),
    ("ko", "Koreanic", "Korean", "Hangul"),
    ("sw", "Niger-Congo", "Bantu", "Latin"),
    ("tr", "Turkic", "Oghuz", "Latin"),
    ("eu", "Isolate", "Basque", "Latin"),
    ("km", "Austroasiatic", "Khmeric", "Khmer"),
    ("th", "Kra-Dai", "Tai", "Thai"),
    ("ta", "Dravidian", "South Dravidian", "Tamil"),
    ("el", "Indo-European", "Hellenic", "Greek"),
])
def test_registry_facts(code, family, branch, script):
    lang = get_language(code)
    assert (lang.code, lang.family, lang.branch, lang.script) == (code, family, branch, script)


def test_registry_is_consistent():
    for code, lang in LANGUAGES.items():
        assert code == lang.code and len(code) == 2 and code.islower()
        assert lang.name and lang.family and lang.branch and lang.script


def test_get_language_is_case_insensitive():
    assert get_language(" DE ").code == "de"


@pytest.mark.parametrize("query, hint", [
    ("ger", "'de' (German)"),
    ("deu", "'de' (German)"),
    ("english", "'en' (English)"),
    ("German", "'de' (German)"),
    ("zh-CN", "'zh' (Chinese)"),
    ("arabic", "'ar' (Arabic)"),
])
def test_unknown_code_suggests_the_nearest(query, hint):
    with pytest.raises(UnknownLanguageError, match="did you mean") as e:
        get_language(query)
    assert hint in str(e.value)
    assert isinstance(e.value, ValueError)


def test_unknown_code_without_a_near_match_lists_codes():
    with pytest.raises(UnknownLanguageError, match="ISO 639-1"):
        get_language("qqqqqq")


def test_parse_langs():
    assert parse_langs("en,de, fr") == ["en", "de", "fr"]
    assert parse_langs("en,DE,en,,de") == ["en", "de"]
    assert parse_langs(["ja", "ko"]) == ["ja", "ko"]
    with pytest.raises(UnknownLanguageError, match="did you mean 'de'"):
        parse_langs("en,ger")
    with pytest.raises(UnknownLanguageError, match="no language codes"):
        parse_langs(" , ")


# --------------------------------------------------------------- user corpus

def test_user_folder(tmp_path):
    paras = [f"Absatz Nummer {i}." for i in range(12)]
    (tmp_path / "de.txt").write_text("\n\n".join(paras) + "\n", encoding="utf-8")
    (tmp_path / "fr.txt").write_text("Un.\n\n  \n\nDeux\nlignes.\r\n\r\nTrois.", encoding="utf-8")
    (tmp_path / "notes.md").write_text("ignored")
    c = load_user_corpus(tmp_path)
    assert c.languages() == ["de", "fr"]
    # every 5th paragraph is held out, deterministically
    assert c.texts("de", "eval") == [paras[4], paras[9]]
    assert c.texts("de", "profile") == [p for i, p in enumerate(paras) if i % 5 != 4]
    assert c.texts("fr", "profile") == ["Un.", "Deux\nlignes.", "Trois."]
    assert c.texts("fr", "eval") == []
    [de] = [s for s in c.stats() if s.code == "de"]
    assert de.source == "user" and de.n_paragraphs == {"profile": 10, "eval": 2}
    with pytest.raises(CorpusError, match="has no Russian"):
        c.texts("ru")


def test_user_jsonl(tmp_path):
    lines = [{"lang": "de", "text": f"Satz {i}."} for i in range(5)]
    lines += [{"lang": "ja", "text": "日本語の文です。", "split": "eval"},
              {"lang": "ja", "text": "もう一つの文。", "split": "profile"}]
    f = tmp_path / "mine.jsonl"
    f.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n\n", encoding="utf-8")
    c = load_user_corpus(str(f))
    assert c.languages() == ["de", "ja"]
    assert c.texts("de", "eval") == ["Satz 4."]
    assert c.texts("ja", "eval") == ["日本語の文です。"]
    assert c.texts("ja", "profile") == ["もう一つの文。"]


@pytest.mark.parametrize("make, match", [
    (lambda d: d, "no <lang>.txt files"),
    (lambda d: (d / "de.txt").write_text("\n \n") and d, "is empty"),
    (lambda d: (d / "german.txt").write_text("Hallo Welt.") and d, "not named after a language code.*'de'"),
    (lambda d: (d / "de.txt").write_bytes(b"\xff\xfe\x00bad") and d, "not UTF-8"),
    (lambda d: d / "missing", "does not exist"),
    (lambda d: (d / "c.csv").write_text("x") and d / "c.csv", "not a .jsonl file"),
    (lambda d: (d / "c.jsonl").write_text('{"lang": "de", "text": "ok"}\n{"lang": "de", text}\n')
        and d / "c.jsonl", "line 2 is not valid JSON"),
    (lambda d: (d / "c.jsonl").write_text('{"lang": "de"}\n') and d / "c.jsonl", "needs string fields"),
    (lambda d: (d / "c.jsonl").write_text('{"lang": "xx", "text": "t"}\n') and d / "c.jsonl", "line 1"),
    (lambda d: (d / "c.jsonl").write_text('{"lang": "de", "text": "t", "split": "test"}\n')
        and d / "c.jsonl", "split 'test'"),
    (lambda d: (d / "c.jsonl").write_text("\n") and d / "c.jsonl", "has no text"),
])
def test_user_corpus_errors_are_one_clear_sentence(tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises(CorpusError, match=match) as e:
        load_user_corpus(path)
    assert "\n" not in str(e.value)

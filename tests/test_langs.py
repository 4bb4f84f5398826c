"""Languages as BCP-47 tags: parsing, normalisation, the registry, matching an asked tag to
what a corpus holds, and user corpora that mix asked, other and unknown languages."""
import json

import pytest

from babel_edge.corpus import (LANGUAGES, CorpusError, UnknownLanguageError, canonical_tag,
                               get_language, load_corpus, load_user_corpus, match_tag,
                               parse_langs)


# ------------------------------------------------------------------ normalisation

@pytest.mark.parametrize("tag, canonical", [
    ("en", "en"), (" DE ", "de"), ("EN-latn", "en"),           # case; Suppress-Script dropped
    ("pt-br", "pt-BR"), ("pt_BR", "pt-BR"), ("PT-PT", "pt-PT"),
    ("zh", "zh"),                                              # bare: what the corpus holds
    ("zh-TW", "zh-Hant-TW"), ("zh_tw", "zh-Hant-TW"), ("zh-HK", "zh-Hant-HK"),
    ("zh-CN", "zh-Hans-CN"), ("zh-hant", "zh-Hant"), ("ZH-HANS", "zh-Hans"),
    ("sr", "sr"), ("sr-latn", "sr-Latn"), ("sr-ME", "sr-Latn-ME"), ("sh", "sr-Latn"),
    ("ja-Jpan", "ja"), ("ko-Kore", "ko"),
    ("deu", "de"), ("ger", "de"), ("iw", "he"), ("cmn", "zh"), ("arb", "ar"), ("pes", "fa"),
    ("tl", "fil"), ("en-GB", "en-GB"), ("es-419", "es-419"), ("de-1996", "de-1996"),
])
def test_canonical_tags(tag, canonical):
    assert canonical_tag(tag) == canonical
    assert canonical_tag(canonical) == canonical          # normal form is stable


@pytest.mark.parametrize("tag, name, script, region, base", [
    ("zh-TW", "Chinese (Traditional, Taiwan)", "Hant", "TW", "zh"),
    ("zh-Hans", "Chinese (Simplified)", "Hans", None, "zh"),
    ("zh", "Chinese", "Hans", None, "zh"),                    # the likely script
    ("pt-BR", "Portuguese (Brazil)", "Latn", "BR", "pt"),
    ("sr-Latn", "Serbian (Latin)", "Latn", None, "sr"),
    ("sr", "Serbian", "Cyrl", None, "sr"),
    ("ja", "Japanese", "Jpan", None, "ja"),
    ("ko", "Korean", "Kore", None, "ko"),
    ("ar", "Arabic", "Arab", None, "ar"),
    ("uz-Cyrl", "Uzbek (Cyrillic)", "Cyrl", None, "uz"),
])
def test_registry_per_tag(tag, name, script, region, base):
    lang = get_language(tag)
    assert (lang.code, lang.name, lang.script, lang.region, lang.base) == (
        canonical_tag(tag), name, script, region, base)
    assert lang.family == LANGUAGES[base].family and lang.branch == LANGUAGES[base].branch


@pytest.mark.parametrize("code, family, branch, script", [
    ("de", "Indo-European", "Germanic", "Latn"),
    ("ru", "Indo-European", "Slavic", "Cyrl"),
    ("hi", "Indo-European", "Indo-Aryan", "Deva"),
    ("ja", "Japonic", "Japanese", "Jpan"),
    ("fi", "Uralic", "Finnic", "Latn"),
    ("hu", "Uralic", "Ugric", "Latn"),
    ("ar", "Afro-Asiatic", "Semitic", "Arab"),
    ("he", "Afro-Asiatic", "Semitic", "Hebr"),
    ("am", "Afro-Asiatic", "Semitic", "Ethi"),
    ("om", "Afro-Asiatic", "Cushitic", "Latn"),
    ("zh", "Sino-Tibetan", "Sinitic", "Hans"),
    ("ko", "Koreanic", "Korean", "Kore"),
    ("sw", "Niger-Congo", "Bantu", "Latn"),
    ("tr", "Turkic", "Oghuz", "Latn"),
    ("eu", "Isolate", "Basque", "Latn"),
    ("km", "Austroasiatic", "Khmeric", "Khmr"),
    ("th", "Kra-Dai", "Tai", "Thai"),
    ("ta", "Dravidian", "South Dravidian", "Taml"),
    ("el", "Indo-European", "Hellenic", "Grek"),
    ("yi", "Indo-European", "Germanic", "Hebr"),
])
def test_registry_facts(code, family, branch, script):
    lang = get_language(code)
    assert (lang.code, lang.family, lang.branch, lang.script) == (code, family, branch, script)


def test_registry_is_consistent():
    for code, lang in LANGUAGES.items():
        assert code == lang.code == canonical_tag(code) == lang.base
        assert lang.name and lang.family and lang.branch
        assert len(lang.script) == 4 and lang.script.istitle(), (code, lang.script)
        assert lang.script_name and lang.unicode_scripts


def test_script_decides_the_unicode_scripts():
    assert set(get_language("ja").unicode_scripts) == {"Hani", "Hira", "Kana"}
    assert set(get_language("ko").unicode_scripts) == {"Hang", "Hani"}
    assert get_language("zh-Hant").unicode_scripts == ("Hani",)
    assert get_language("sr-Latn").unicode_scripts == ("Latn",)
    assert get_language("sr").unicode_scripts == ("Cyrl",)


@pytest.mark.parametrize("query, message", [
    ("german", "did you mean 'de' (German)"),
    ("English", "did you mean 'en' (English)"),
    ("arabic", "did you mean 'ar' (Arabic)"),
    ("zh-XY", "region 'XY' is not known; did you mean 'zh' (Chinese)"),
    ("en-Zzzz", "script 'Zzzz' is not known"),
    ("no", "did you mean 'nb' (Norwegian Bokmål)"),
    ("gd", "'gd' (Scottish Gaelic) is not in babel-edge's language table"),
    ("qqqqqq", "use a BCP-47 tag such as"),
    ("", "empty language tag"),
])
def test_unknown_tags_say_what_to_do(query, message):
    with pytest.raises(UnknownLanguageError) as e:
        get_language(query)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, ValueError)


def test_parse_langs():
    assert parse_langs("en,de, fr") == ["en", "de", "fr"]
    assert parse_langs("en,DE,en,,de") == ["en", "de"]
    assert parse_langs(["ja", "ko"]) == ["ja", "ko"]
    assert parse_langs("zh-TW,zh_tw,zh-Hant-TW") == ["zh-Hant-TW"]
    with pytest.raises(UnknownLanguageError, match="did you mean 'de'"):
        parse_langs("en,deutsch")
    with pytest.raises(UnknownLanguageError, match="no language tags"):
        parse_langs(" , ")


# ------------------------------------------------------------------ matching

AVAILABLE = ["en", "de", "fr", "zh-Hans", "zh-Hant", "pt-BR", "sr-Cyrl", "sr-Latn"]


@pytest.mark.parametrize("ask, got", [
    ("zh", "zh-Hans"), ("zh-CN", "zh-Hans"), ("zh-TW", "zh-Hant"), ("zh-Hant-TW", "zh-Hant"),
    ("zh-HK", "zh-Hant"),                    # Traditional, region dropped
    ("pt", "pt-BR"), ("pt-br", "pt-BR"), ("pt-PT", None),   # regional vocabularies differ
    ("sr", "sr-Cyrl"), ("sr-RS", "sr-Cyrl"), ("sr-ME", "sr-Latn"), ("sh", "sr-Latn"),
    ("en-GB", "en"), ("en-US", "en"), ("de-DE", "de"), ("de-CH", "de"), ("fr-Latn", "fr"),
    ("es", None), ("ja", None),
])
def test_match_tag(ask, got):
    assert match_tag(ask, AVAILABLE) == got


def test_match_tag_never_changes_the_script():
    assert match_tag("zh-Hant", ["zh"]) is None          # a bare zh is Simplified by default
    assert match_tag("zh-Hans", ["zh"]) == "zh"
    assert match_tag("zh", ["zh", "zh-Hans"]) == "zh"     # the same tag first
    assert match_tag("sr-Latn", ["sr"]) is None
    assert match_tag("zh-Hant", ["zh-Hant-TW"]) == "zh-Hant-TW"


def test_bare_tags_resolve_to_what_the_built_in_corpus_holds():
    corpus = load_corpus()
    assert parse_langs("en,zh,pt,sr,zh-TW,en-GB", corpus) == [
        "en", "zh-Hans", "pt-BR", "sr-Cyrl", "zh-Hant"]
    assert corpus.resolve("zh-CN") == "zh-Hans"
    assert corpus.texts("zh", "eval") == corpus.texts("zh-Hans", "eval")
    assert corpus.domains("pt") == corpus.domains("pt-BR")
    with pytest.raises(CorpusError, match="no Portuguese .*Angola.* it has pt-BR"):
        parse_langs("en,pt-AO", corpus)


# ------------------------------------------------------------------ user corpora

def _write(folder, name, paragraphs):
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")


def test_mixed_user_folder_reads_the_asked_languages_only(tmp_path):
    """The issue's case: en.txt de.txt fr.txt zh-TW.txt (and a stray file) in a folder, eval
    asked for en,de,fr: zh-TW.txt is not even read, and one warning line names it."""
    for code in ("en", "de", "fr"):
        _write(tmp_path, f"{code}.txt", [f"{code} paragraph {i}." for i in range(10)])
    _write(tmp_path, "zh-TW.txt", ["繁體中文的段落。"] * 3)
    (tmp_path / "notes.txt").write_text("not a language\n")
    (tmp_path / "broken.txt").write_bytes(b"\xff\xfe bad")       # unknown name: never opened
    warnings = []
    c = load_user_corpus(tmp_path, "en,de,fr", warn=warnings.append)
    assert c.languages() == ["de", "en", "fr"]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "zh-TW.txt" in warnings[0] and "notes.txt" in warnings[0] and "broken.txt" in warnings[0]
    assert "not asked for" in warnings[0] and "not a known language tag" in warnings[0]
    # and zh-TW.txt is read as Traditional Chinese when asked for, under any matching tag
    for ask in ("zh-TW", "zh-Hant", "zh-Hant-TW"):
        c = load_user_corpus(tmp_path, ask, warn=lambda m: None)
        assert c.languages() == ["zh-Hant-TW"] and c.resolve(ask) == "zh-Hant-TW"
    # a bare zh is Simplified by default, which this folder does not have
    with pytest.raises(CorpusError, match="has no text for zh .*it has .*zh-Hant-TW"):
        load_user_corpus(tmp_path, "en,zh")
    # without --langs every file must be named after a language
    with pytest.raises(CorpusError, match="'broken.txt' is not named after a language tag"):
        load_user_corpus(tmp_path)


def test_asked_language_that_is_missing_empty_or_unreadable_is_an_error(tmp_path):
    _write(tmp_path, "en.txt", ["One.", "Two."])
    with pytest.raises(CorpusError, match="has no text for de .German."):
        load_user_corpus(tmp_path, "en,de")
    (tmp_path / "de.txt").write_text("\n  \n")
    with pytest.raises(CorpusError, match="de.txt' is empty"):
        load_user_corpus(tmp_path, "en,de")
    (tmp_path / "de.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(CorpusError, match="not UTF-8"):
        load_user_corpus(tmp_path, "en,de")


def test_user_folder_with_domains(tmp_path):
    _write(tmp_path, "de.txt", [f"Absatz {i}." for i in range(10)])
    _write(tmp_path, "news/de.txt", [f"Nachricht {i}: " + "Neues vom Tage. " * 120 for i in range(5)])
    _write(tmp_path, "news/fr.txt", [f"Nouvelle {i}." for i in range(5)])
    _write(tmp_path, "chat/de-AT.txt", [f"Servus {i}." for i in range(5)])
    c = load_user_corpus(tmp_path)
    assert c.languages() == ["de", "de-AT", "fr"]
    assert c.domains("de") == ["user", "news"]          # DOMAINS order, then by name
    assert set(c.domains()) == {"user", "news", "chat"}
    # splits per (language, domain): every 5th paragraph of each
    assert [t[:12] for t in c.texts("de", "eval", domains=["news"])] == ["Nachricht 4:"]
    assert c.texts("de", "eval", domains=["user"]) == ["Absatz 4.", "Absatz 9."]
    assert [p.domain for p in c.paragraphs("de", "eval")] == ["user", "news", "user"]
    # the named domain is held out before the main text; fr has one domain only
    assert c.unseen_domain(["de"]) == "news"
    assert c.unseen_domain(["de", "fr"]) is None
    assert c.texts("de", exclude=["news"]) == c.texts("de", domains=["user"])
    assert all("Nachricht" not in t for t in c.texts("de", exclude=["news"]))
    with pytest.raises(CorpusError, match="not a domain name"):
        _write(tmp_path, "Bad Name/de.txt", ["x"])
        load_user_corpus(tmp_path)


def test_user_folder_basics(tmp_path):
    paras = [f"Absatz Nummer {i}." for i in range(12)]
    _write(tmp_path, "de.txt", paras)
    (tmp_path / "fr.txt").write_text("Un.\n\n  \n\nDeux\nlignes.\r\n\r\nTrois.", encoding="utf-8")
    (tmp_path / "notes.md").write_text("ignored")
    c = load_user_corpus(tmp_path)
    assert c.languages() == ["de", "fr"] and c.domains() == ["user"]
    assert c.texts("de", "eval") == [paras[4], paras[9]]
    assert c.texts("de", "profile") == [p for i, p in enumerate(paras) if i % 5 != 4]
    assert c.texts("fr", "profile") == ["Un.", "Deux\nlignes.", "Trois."]
    assert c.texts("fr", "eval") == []
    [de] = [s for s in c.stats() if s.code == "de"]
    assert de.source == "user" and de.n_paragraphs == {"profile": 10, "eval": 2}
    with pytest.raises(CorpusError, match="has no Russian"):
        c.texts("ru")
    (tmp_path / "DE.txt").write_text("Noch einer.")
    if len(list(tmp_path.glob("*.txt"))) == 3:               # a case-sensitive file system
        with pytest.raises(CorpusError, match=r"both de \(German\)"):
            load_user_corpus(tmp_path)


def test_user_jsonl_with_tags_domains_and_skipped_lines(tmp_path):
    lines = [{"lang": "de", "text": f"Satz {i}."} for i in range(5)]
    lines += [{"lang": "ja", "text": "日本語の文です。", "split": "eval"},
              {"lang": "ja", "text": "もう一つの文。", "split": "profile"},
              {"lang": "zh_TW", "text": "這是繁體中文。", "domain": "news"},
              {"lang": "klingon!", "text": "x"},
              {"lang": "de", "text": "Eine Nachricht.", "domain": "news"}]
    f = tmp_path / "mine.jsonl"
    f.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n\n",
                 encoding="utf-8")
    warnings = []
    c = load_user_corpus(str(f), "de,ja", warn=warnings.append)
    assert c.languages() == ["de", "ja"] and c.domains("de") == ["user", "news"]
    assert c.texts("de", "eval", domains=["user"]) == ["Satz 4."]
    assert c.texts("ja", "eval") == ["日本語の文です。"]
    assert len(warnings) == 1 and "zh-Hant-TW (1 lines)" in warnings[0] and "'klingon!'" in warnings[0]
    c = load_user_corpus(str(f), "zh-TW", warn=warnings.append)
    assert c.languages() == ["zh-Hant-TW"] and c.domains() == ["news"]
    with pytest.raises(CorpusError, match="line 9: unknown language 'klingon!'"):
        load_user_corpus(str(f))


@pytest.mark.parametrize("make, match", [
    (lambda d: d, "no <lang>.txt files"),
    (lambda d: (d / "de.txt").write_text("\n \n") and d, "is empty"),
    (lambda d: (d / "german.txt").write_text("Hallo Welt.") and d,
     "not named after a language tag.*'de'"),
    (lambda d: (d / "de.txt").write_bytes(b"\xff\xfe\x00bad") and d, "not UTF-8"),
    (lambda d: d / "missing", "does not exist"),
    (lambda d: (d / "c.csv").write_text("x") and d / "c.csv", "not a .jsonl file"),
    (lambda d: (d / "c.jsonl").write_text('{"lang": "de", "text": "ok"}\n{"lang": "de", text}\n')
        and d / "c.jsonl", "line 2 is not valid JSON"),
    (lambda d: (d / "c.jsonl").write_text('{"lang": "de"}\n') and d / "c.jsonl", "needs string fields"),
    (lambda d: (d / "c.jsonl").write_text('{"lang": "xx", "text": "t"}\n') and d / "c.jsonl", "line 1"),
    (lambda d: (d / "c.jsonl").write_text('{"lang": "de", "text": "t", "split": "test"}\n')
        and d / "c.jsonl", "split 'test'"),
    (lambda d: (d / "c.jsonl").write_text('{"lang": "de", "text": "t", "domain": "A B"}\n')
        and d / "c.jsonl", "domain 'A B'"),
    (lambda d: (d / "c.jsonl").write_text("\n") and d / "c.jsonl", "has no text"),
])
def test_user_corpus_errors_are_one_clear_sentence(tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises(CorpusError, match=match) as e:
        load_user_corpus(path)
    assert "\n" not in str(e.value)

"""The built-in corpus: languages, domains, splits, interleaving, the held-out domain, and the
shipped file itself (fast, offline). Tags and user corpora: test_langs.py."""
import json
import lzma
import unicodedata
from collections import defaultdict
from importlib import resources

import pytest

from babel_edge.corpus import (DOMAINS, MIN_UNSEEN_EVAL_BYTES, SPLITS, UNSEEN_PREFERENCE,
                               CorpusError, UnknownLanguageError, canonical_tag, corpus_digest,
                               get_language, load_corpus)

# Languages whose LibreOffice text is chosen from the same keys (build_corpus.CORE).
CORE = ["en", "de", "fr", "es", "ru", "pl", "ja", "zh-Hans", "ko", "fi", "hu", "tr",
        "id", "vi", "eu", "km", "om"]
# The languages issue 12 asks a multi-domain corpus for.
ASKED = ["en", "de", "fr", "es", "it", "ru", "zh-Hans", "ar", "ja", "pl"]
NEW_DOMAINS = ("handbook", "fortunes", "scripture")


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


def _data():
    return resources.files("babel_edge.corpus").joinpath("data").joinpath("corpus.jsonl.xz")


@pytest.fixture(scope="module")
def records():
    """The raw shipped rows, to check what the API hides."""
    with _data().open("rb") as raw, lzma.open(raw, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# ------------------------------------------------------------ the shipped file

def test_data_is_compressed_and_small():
    size = len(_data().read_bytes())
    assert size < 8_000_000, f"corpus.jsonl.xz is {size / 1e6:.1f} MB; keep it under 8 MB"


def test_digest_is_of_the_shipped_file():
    import hashlib
    assert corpus_digest() == hashlib.sha256(_data().read_bytes()).hexdigest()[:16]


def test_records_are_well_formed(records):
    seen = set()
    for r in records:
        assert set(r) == {"lang", "domain", "source", "key", "split", "text"}, r
        assert r["domain"] in DOMAINS and r["domain"] != "user", r
        assert r["split"] in SPLITS and r["source"]
        assert canonical_tag(r["lang"]) == r["lang"], r["lang"]
        assert r["text"] == r["text"].strip() and r["text"]
        assert (r["lang"], r["domain"], r["key"]) not in seen, r
        seen.add((r["lang"], r["domain"], r["key"]))


def test_split_is_decided_per_key(records):
    """Parallel domains split per alignment key, so eval text is parallel across languages."""
    split_of = defaultdict(set)
    for r in records:
        if DOMAINS[r["domain"]].parallel:
            split_of[(r["domain"], r["key"])].add(r["split"])
    assert split_of and all(len(s) == 1 for s in split_of.values())


def test_no_text_twice_in_a_language(records):
    seen = set()
    for r in records:
        assert (r["lang"], r["text"]) not in seen, (r["lang"], r["domain"], r["text"][:60])
        seen.add((r["lang"], r["text"]))


def test_notice_covers_every_domain_and_language(records):
    notice = resources.files("babel_edge.corpus").joinpath("data").joinpath("NOTICE.md").read_text()
    for domain in {r["domain"] for r in records}:
        assert f"(domain `{domain}`)" in notice, domain
    for licence in ("Mozilla Public License 2.0", "MIT", "CC-BY-SA-3.0", "GPL-2+", "public domain"):
        assert licence in notice
    for lang, domain in {(r["lang"], r["domain"]) for r in records}:
        assert f"| {lang} | {domain} |" in notice, (lang, domain)
    # the licences that ask for their text to travel with the work ship it
    texts = resources.files("babel_edge.corpus").joinpath("data").joinpath("LICENSES.md").read_text()
    for needle in ("GNU GENERAL PUBLIC LICENSE", "Mozilla Public License Version 2.0",
                   "Attribution-ShareAlike 3.0 Unported", "The Regents of the University of California"):
        assert needle in texts, needle


# ------------------------------------------------------------ languages and domains

def test_breadth_of_languages_families_and_domains(corpus):
    langs = corpus.languages()
    assert langs == sorted(langs) and len(langs) >= 40
    assert len({get_language(c).family for c in langs}) >= 8
    for code in CORE + ["ar", "hi", "sw", "he", "am", "zh-Hant", "pt-BR", "sr-Cyrl", "sr-Latn"]:
        assert code in langs, code
    assert set(corpus.domains()) >= {"libreoffice", "udhr", *NEW_DOMAINS}


def test_asked_languages_have_several_domains_of_real_text(corpus):
    """Issue 12: at least two more domains than LibreOffice and UDHR, and the asked
    languages in several of them."""
    for code in ASKED:
        ds = corpus.domains(code)
        assert "handbook" in ds and len(ds) >= 3, (code, ds)
        assert len(set(ds) - {"libreoffice"}) >= 2, (code, ds)
    for domain in NEW_DOMAINS:
        having = [l for l in corpus.languages() if domain in corpus.domains(l)]
        assert len(having) >= 7, (domain, having)


def test_script_variants_are_kept_apart(corpus):
    stats = {s.code: s for s in corpus.stats()}
    assert stats["zh-Hans"].script == "Hans" and stats["zh-Hant"].script == "Hant"
    assert stats["sr-Cyrl"].script == "Cyrl" and stats["sr-Latn"].script == "Latn"
    assert "libreoffice" in stats["zh-Hant"].domains         # LibreOffice's zh-TW help
    # the variants share only strings that have no character of their own in either
    both = set(corpus.texts("zh-Hans")) & set(corpus.texts("zh-Hant"))
    assert len(both) < 0.01 * len(corpus.texts("zh-Hant"))
    assert not any(c in t for t in both for c in SIMPLIFIED + TRADITIONAL), both


def test_stats_rows_add_up(corpus):
    stats = {s.code: s for s in corpus.stats()}
    de = stats["de"]
    assert (de.name, de.family, de.branch, de.script) == ("German", "Indo-European",
                                                          "Germanic", "Latn")
    assert de.source == "+".join(de.domains) and set(de.domains) >= {"libreoffice", "handbook"}
    for s in stats.values():
        for split in SPLITS:
            assert s.n_chars[split] == sum(d.n_chars[split] for d in s.domains.values())
            assert s.n_paragraphs[split] == len(corpus.texts(s.code, split))
        for d, ds in s.domains.items():
            assert ds.n_paragraphs["eval"] == len(corpus.texts(s.code, "eval", domains=[d]))
            assert ds.n_chars["profile"] == sum(map(len, corpus.texts(s.code, domains=[d])))


def test_sizes_are_capped(corpus):
    for s in corpus.stats():
        for d, ds in s.domains.items():
            if d == "libreoffice" and s.code not in ("hi", "zh-Hant"):
                assert 50_000 < ds.n_chars["profile"] < 400_000, (s.code, ds)
                assert 10_000 < ds.n_chars["eval"] < 100_000, (s.code, ds)
            elif d in NEW_DOMAINS:
                assert 15_000 < ds.n_chars["profile"] <= 100_000, (s.code, ds)
                assert 4_000 < ds.n_chars["eval"] <= 30_000, (s.code, ds)
            assert ds.n_chars["eval"] > 500, (s.code, ds)


# ------------------------------------------------------------ splits per (language, domain)

def test_domain_metadata_and_splits_are_disjoint(corpus):
    for code in corpus.languages():
        everything = set()
        for d in corpus.domains(code):
            rows = {s: corpus.paragraphs(code, s, domains=[d]) for s in SPLITS}
            assert rows["profile"] and all(p.domain == d and p.lang == code
                                           for s in SPLITS for p in rows[s]), (code, d)
            assert {p.split for p in rows["eval"]} <= {"eval"}
            profile, evals = ({p.text for p in rows[s]} for s in SPLITS)
            assert not profile & evals, (code, d)
            keys = [{p.key for p in rows[s]} for s in SPLITS]
            assert not keys[0] & keys[1], (code, d)
            texts = profile | evals
            assert not texts & everything, (code, d)          # no text in two domains
            everything |= texts


def test_eval_keys_parallel_across_libreoffice_languages(corpus):
    core_eval = [set(corpus.keys(c, "eval", domains=["libreoffice"])) for c in CORE]
    assert all(k == core_eval[0] for k in core_eval), "core languages must share their eval keys"
    assert len(core_eval[0]) >= 300 and all(k.startswith("libreoffice:") for k in core_eval[0])
    for code in ("it", "pt-BR", "nl", "cs", "el", "da"):
        assert len(set(corpus.keys(code, "eval", domains=["libreoffice"])) & core_eval[0]) \
            >= 0.9 * len(core_eval[0])


@pytest.mark.parametrize("domain, least", [("udhr", 1.0), ("handbook", 0.6), ("scripture", 0.9)])
def test_eval_keys_of_parallel_domains_are_shared(corpus, domain, least):
    having = [l for l in corpus.languages() if domain in corpus.domains(l)]
    en = set(corpus.keys("en", "eval", domains=[domain]))
    assert en
    shared = [l for l in having
              if len(set(corpus.keys(l, "eval", domains=[domain])) & en) >= least * len(en)]
    assert len(shared) >= 0.75 * len(having), (domain, sorted(set(having) - set(shared)))


# ------------------------------------------------------------ reading: interleaving

def test_interleaving_gives_each_domain_an_equal_share(corpus):
    for code in ("en", "de", "ar", "ja"):
        rows = corpus.paragraphs(code, "profile")
        per = {d: corpus.paragraphs(code, "profile", domains=[d]) for d in corpus.domains(code)}
        # a permutation of the domains' paragraphs that keeps each domain's own order
        for d, ps in per.items():
            assert [p for p in rows if p.domain == d] == ps
        assert len(rows) == sum(map(len, per.values()))
        longest = max(len(p.text) for p in rows)
        total = dict.fromkeys(per, 0)
        for p in rows:
            total[p.domain] += len(p.text)
            if any(total[d] >= sum(len(x.text) for x in ps) for d, ps in per.items()):
                break                                   # a domain ran out: the rule is met
            assert max(total.values()) - min(total.values()) <= longest, (code, total)
        assert len(per) >= 3


def test_interleaving_weights(corpus):
    rows = corpus.paragraphs("en", "profile", domains=["handbook", "fortunes"],
                             weights={"handbook": 3})
    taken = defaultdict(int)
    for p in rows[:120]:
        taken[p.domain] += len(p.text)
    assert 2.3 < taken["handbook"] / taken["fortunes"] < 3.9
    with pytest.raises(CorpusError, match="positive"):
        corpus.texts("en", weights={"handbook": 0})


def test_texts_keys_and_paragraphs_agree(corpus):
    args = ("fr", "eval")
    ps = corpus.paragraphs(*args)
    assert corpus.texts(*args) == [p.text for p in ps]
    assert corpus.keys(*args) == [f"{p.domain}:{p.key}" for p in ps]
    assert corpus.texts(*args) is not corpus.texts(*args)         # a new list each call


# ------------------------------------------------------------ leave one domain out

def test_leave_one_domain_out_never_returns_the_held_out_domain(corpus):
    checked = 0
    for code in corpus.languages():
        domains = corpus.domains(code)
        if len(domains) < 2:
            continue
        for held in domains:
            for split in SPLITS:
                held_texts = set(corpus.texts(code, split, domains=[held]))
                rows = corpus.paragraphs(code, split, exclude=[held])
                assert all(p.domain != held for p in rows), (code, held)
                assert not held_texts & {p.text for p in rows}, (code, held)
                assert {p.domain for p in rows} == set(domains) - {held} or split == "eval"
                checked += 1
    assert checked > 150
    # an alias reads the same language: "zh" is zh-Hans here
    assert corpus.texts("zh", exclude=["handbook"]) == corpus.texts("zh-Hans", exclude=["handbook"])


def test_unseen_domain_rule(corpus):
    assert corpus.unseen_domain(["en", "de", "fr"]) == "handbook"
    assert corpus.unseen_domain(["en-US", "de-DE", "fr"]) == "handbook"

    def eval_bytes(code, d):
        return sum(len(t.encode()) for t in corpus.texts(code, "eval", domains=[d]))

    def qualifies(d, codes):
        return all(d in corpus.domains(c) and eval_bytes(c, d) >= MIN_UNSEEN_EVAL_BYTES
                   and len(corpus.domains(c)) >= 2 for c in codes)

    sets = [["ko"], ["om"], ["ar"], ["ja", "zh-Hans"], ["fr", "ar"], ["it", "es", "ru"],
            ["km", "vi"], ["sr-Latn"], ["de", "pl", "cs"]]
    for langs in sets:
        got = corpus.unseen_domain(langs)
        if got is None:
            assert not any(qualifies(d, langs) for d in corpus.domains()), langs
            continue
        assert qualifies(got, langs), (langs, got)
        earlier = UNSEEN_PREFERENCE[:UNSEEN_PREFERENCE.index(got)]
        assert not any(qualifies(d, langs) for d in earlier), (langs, got)
        # the held-out domain leaves every target profile text
        for c in langs:
            assert corpus.texts(c, exclude=[got])
    assert corpus.unseen_domain(["om"]) is None        # LibreOffice only


def test_excluding_a_languages_only_domain_is_an_error(corpus):
    with pytest.raises(CorpusError, match="only domain"):
        corpus.texts("om", exclude=["libreoffice"])
    with pytest.raises(CorpusError, match="no fortunes text in .*ja"):
        corpus.texts("ja", domains=["fortunes"])
    assert corpus.texts("om", exclude=["handbook"])           # not one of its domains: no-op


# ------------------------------------------------------------ the text itself

def _share(text, lo, hi):
    letters = [c for c in text if c.isalpha()]
    return sum(lo <= ord(c) <= hi for c in letters) / max(1, len(letters))


@pytest.mark.parametrize("code, lo, hi, least", [
    ("ru", 0x0400, 0x04FF, 0.8),   # Cyrillic
    ("uk", 0x0400, 0x04FF, 0.9),
    ("bg", 0x0400, 0x04FF, 0.9),
    ("sr-Cyrl", 0x0400, 0x04FF, 0.95),
    ("sr-Latn", 0x0041, 0x024F, 0.95),
    ("uz-Cyrl", 0x0400, 0x04FF, 0.95),
    ("el", 0x0370, 0x03FF, 0.8),   # Greek
    ("zh-Hans", 0x4E00, 0x9FFF, 0.7),   # CJK ideographs (the handbook names commands)
    ("zh-Hant", 0x4E00, 0x9FFF, 0.7),
    ("ko", 0xAC00, 0xD7AF, 0.8),   # Hangul syllables
    ("km", 0x1780, 0x17FF, 0.8),   # Khmer
    ("ar", 0x0600, 0x06FF, 0.9),   # Arabic
    ("fa", 0x0600, 0x06FF, 0.9),
    ("he", 0x0590, 0x05FF, 0.95),  # Hebrew
    ("hi", 0x0900, 0x097F, 0.9),   # Devanagari
    ("am", 0x1200, 0x137F, 0.95),  # Ethiopic
    ("th", 0x0E00, 0x0E7F, 0.95),  # Thai
])
def test_text_is_in_the_languages_script(corpus, code, lo, hi, least):
    for d in corpus.domains(code):
        text = "".join(corpus.texts(code, "profile", domains=[d])
                       + corpus.texts(code, "eval", domains=[d]))
        assert _share(text, lo, hi) >= least, (code, d)


# A few frequent characters whose Simplified and Traditional forms differ.
SIMPLIFIED, TRADITIONAL = "这们个国说时会为来对学过还没发经问见长门间车书话语认让请开关无与体电实现头", \
                          "這們個國說時會為來對學過還沒發經問見長門間車書話語認讓請開關無與體電實現頭"


@pytest.mark.parametrize("code, simplified", [("zh-Hans", True), ("zh-Hant", False)])
def test_chinese_variants_use_their_own_characters(corpus, code, simplified):
    for d in corpus.domains(code):
        text = "".join(corpus.texts(code, "profile", domains=[d]))
        simp = sum(text.count(c) for c in SIMPLIFIED)
        trad = sum(text.count(c) for c in TRADITIONAL)
        own, other = (simp, trad) if simplified else (trad, simp)
        assert own > 50 and other < 0.05 * own, (code, d, simp, trad)


def test_japanese_uses_kana(corpus):
    for d in corpus.domains("ja"):
        text = "".join(corpus.texts("ja", "eval", domains=[d]))
        kana = sum(0x3040 <= ord(c) <= 0x30FF for c in text)
        assert kana > 0.2 * len(text), d


def test_untranslated_english_is_rare(corpus):
    for domain in ("libreoffice", "handbook", "scripture"):
        en = dict(zip(corpus.keys("en", "eval", domains=[domain]),
                      corpus.texts("en", "eval", domains=[domain])))
        for code in corpus.languages():
            if code == "en" or domain not in corpus.domains(code):
                continue
            other = dict(zip(corpus.keys(code, "eval", domains=[domain]),
                             corpus.texts(code, "eval", domains=[domain])))
            assert not any(other[k] == en.get(k) for k in other), (code, domain)
    # and a crude English detector finds (almost) nothing in the Latin-script languages
    function_words = {"the", "and", "you", "that", "this", "with", "which"}
    for code in ("de", "fr", "es", "pl", "fi", "hu", "tr", "id", "vi", "eu", "om", "it", "nb",
                 "ca", "pt-BR"):
        texts = corpus.texts(code, "profile")
        englishy = sum(len(function_words & set(t.lower().split())) >= 3 for t in texts)
        assert englishy <= 0.005 * len(texts), code


def test_text_is_clean(corpus):
    for code in corpus.languages():
        for t in corpus.texts(code, "eval") + corpus.texts(code, "profile")[:300]:
            assert "  " not in t and "\t" not in t and "\x1b" not in t, (code, t)
            assert unicodedata.is_normalized("NFC", t), code
            assert "not found]" not in t and "dummy verse" not in t, (code, t)


# ------------------------------------------------------------ errors and caching

def test_unknown_and_missing_languages(corpus):
    with pytest.raises(UnknownLanguageError, match="did you mean 'de'"):
        corpus.texts("deutsch", "eval")
    with pytest.raises(CorpusError, match="has no .*Latin.*bring your own with --corpus"):
        corpus.texts("la", "eval")
    with pytest.raises(CorpusError, match=r"no Portuguese \(Angola\) .*it has pt-BR"):
        corpus.texts("pt-AO")
    with pytest.raises(CorpusError, match="profile' or 'eval'"):
        corpus.texts("de", "train")
    with pytest.raises(CorpusError, match="no nope text"):
        corpus.texts("de", domains=["nope"])
    assert "la" not in corpus and "xx-invalid" not in corpus and "zh-TW" in corpus


def test_load_corpus_is_cached_and_fast():
    import time
    assert load_corpus() is load_corpus()
    c = load_corpus()
    t0 = time.perf_counter()
    for _ in range(20):
        c.texts("de")
        c.texts("zh", "eval", exclude=["handbook"])
    assert time.perf_counter() - t0 < 1.0

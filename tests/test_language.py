"""Languages (models/language.py): locales, detection, Chinese folding and segmentation,
Indonesian stemming, and the customer's-language-first rule of the engine."""

from __future__ import annotations

import re

import pytest

from deflect.models.language import analyze, detect, fold_chinese, language_of_locale
from deflect.models.lexical import BM25Index
from tests.conftest import DEMO_QUERIES, write


@pytest.mark.parametrize(
    "locale, lang",
    [("zh-TW", "zh"), ("zh_Hant", "zh"), ("zh-cn", "zh"), ("id-ID", "id"), ("in", "id"), ("en-us", "en"),
     ("EN", "en"), ("de-CH", "de"), ("", None), (None, None), ("  ", None)],
)  # fmt: skip
def test_language_of_locale(locale, lang):
    assert language_of_locale(locale) == lang


@pytest.mark.parametrize(
    "text, lang",
    [
        ("How do I reset my password? The link in the e-mail has expired.", "en"),
        ("gimana cara ganti kata sandi min, udah coba berkali-kali", "id"),
        ("Bagaimana cara mengunduh faktur bulan lalu?", "id"),
        ("我的密碼忘記了，怎麼重設？", "zh"),
        ("发票在哪里下载", "zh"),
        ("Google 日曆 不同步", "zh"),
        ("???", None),
        ("😀🙏", None),
        ("", None),
    ],
)
def test_detect(text, lang):
    assert detect(text) == lang


def test_traditional_and_simplified_fold_together():
    for tw, cn in (("軟體", "软件"), ("帳號", "账号"), ("登入", "登录"), ("簡訊", "短信"), ("密碼", "密码")):
        assert fold_chinese(tw) == fold_chinese(cn), (tw, cn)
    assert fold_chinese("no chinese here") == "no chinese here"


def _old_english_analyzer():
    """The English-only analyser deflect had before languages (kept here to prove nothing moved)."""
    import Stemmer
    from bm25s.stopwords import STOPWORDS_EN

    stem, stop, token = Stemmer.Stemmer("english").stemWords, set(STOPWORDS_EN), re.compile(r"(?u)\b\w\w+\b")
    return lambda text: stem([w for w in token.findall(text.lower()) if w not in stop])


def test_english_analysis_is_unchanged():
    import csv

    old = _old_english_analyzer()
    with DEMO_QUERIES.open(encoding="utf-8") as f:
        texts = [f"{r['subject']}\n{r['description']}" for r in csv.DictReader(f)]
    assert texts and all(analyze(t, "en") == old(t) for t in texts)
    assert all(analyze(t) == old(t) for t in texts if detect(t) != "id")


def test_chinese_is_segmented_and_folded():
    tw = analyze("我忘記密碼了，帳號登入不了", "zh")
    cn = analyze("忘记密码，账号无法登录", "zh")
    assert {"密码", "忘记", "账号", "登录"} <= set(tw) & set(cn)
    assert "了" not in tw  # a stop word
    mixed = analyze("Google 日曆 sync 一直失敗", "zh")
    assert {"googl", "日历", "sync", "失败"} <= set(mixed)


def test_indonesian_is_stemmed_in_indonesian():
    terms = analyze("Pembayaran langganan saya gagal, tolong bantu mengubah kartu", "id")
    assert {"bayar", "langgan", "gagal", "ubah", "kartu"} <= set(terms)
    assert "saya" not in terms and "tolong" not in terms


@pytest.mark.parametrize("text", ["😀" * 50, "!!!???", "。。。", "\u200b\u200b", "密" * 20_000, "a" * 20_000])
def test_odd_input_gives_terms_or_nothing_never_an_error(text):
    terms = analyze(text)
    assert isinstance(terms, list) and all(isinstance(t, str) and t for t in terms)


def test_bm25_finds_the_other_chinese_script_and_indonesian():
    docs = [
        ("如何重置忘记的密码", "zh"),
        ("下载发票和收据", "zh"),
        ("Cara mengatur ulang kata sandi yang terlupa", "id"),
        ("Mengunduh faktur dan tagihan langganan", "id"),
        ("Reset a forgotten password", "en"),
    ]
    lex = BM25Index()
    lex.index([d for d, _ in docs], [lang for _, lang in docs])
    assert int(lex.scores("我的密碼忘記了要怎麼重設", "zh").argmax()) == 0
    assert int(lex.scores("發票在哪裡下載", "zh").argmax()) == 1
    assert int(lex.scores("gimana cara unduh faktur langganan", "id").argmax()) == 3
    assert int(lex.scores("forgot my password", "en").argmax()) == 4


# ---- the customer's language first -----------------------------------------------------------
@pytest.fixture
def bilingual(tmp_path, fake_embedder):
    """An English and an Indonesian article on passwords, and an English one on refunds."""
    from deflect.config import Settings
    from deflect.engine import Engine
    from deflect.kb_ingest.pipeline import ingest

    kb = tmp_path / "kb"
    for aid, locale, title, body in (
        ("pw", "en", "Reset your password", "Click reset password on the login page."),
        ("pw-id", "id", "Atur ulang password", "Klik reset password di halaman login."),
        ("refund", "en", "Refund policy", "We refund card payment within 14 days."),
    ):
        write(
            kb / f"{aid}.md", f"---\nid: {aid}\ntitle: {title}\nlocale: {locale}\nurl: https://h/{aid}\n---\n{body}\n"
        )
    settings = Settings(home=tmp_path / "home", min_score=0.7, reload_interval=0.0)
    ingest(kb, settings.home, fake_embedder)
    return Engine(settings, fake_embedder)


def _ids(engine, **q):
    from deflect.engine import SuggestQuery

    return [s.article_id for s in engine.suggest(SuggestQuery(**q)).would_show]


def test_the_customers_language_comes_first(bilingual):
    assert bilingual.index.get().language_set == {"en", "id"}
    assert _ids(bilingual, description="lupa password, gimana reset password", locale="id-ID")[0] == "pw-id"
    assert _ids(bilingual, description="lupa password, gimana cara reset password")[0] == "pw-id"  # detected
    en = _ids(bilingual, description="I need to reset my password", locale="en")
    assert en[0] == "pw" and "pw-id" not in en


def test_another_language_only_when_nothing_in_the_customers_passes(bilingual):
    # no Indonesian article on refunds: the English one is shown to an Indonesian customer
    assert _ids(bilingual, description="tolong refund card payment saya", locale="id")[0] == "refund"


def test_a_one_language_index_needs_no_detection(tmp_path, fake_embedder, monkeypatch):
    from deflect.config import Settings
    from deflect.engine import Engine, SuggestQuery
    from deflect.kb_ingest.pipeline import ingest
    from tests.conftest import small_kb

    settings = Settings(home=tmp_path / "home", min_score=0.1)
    ingest(small_kb(tmp_path), settings.home, fake_embedder)
    engine = Engine(settings, fake_embedder)
    bundle = engine.index.get()
    assert bundle.language_set == {"en"}

    def no_detection(text):
        raise AssertionError("detect() ran on the request path")

    monkeypatch.setattr("deflect.engine.detect", no_detection)
    monkeypatch.setattr("deflect.models.language.detect", no_detection)
    assert Engine.query_language(SuggestQuery(description="gimana reset password"), "x", bundle) == "en"
    assert Engine.query_language(SuggestQuery(description="x", locale="id"), "x", bundle) == "id"
    assert engine.suggest(SuggestQuery(description="I need to reset my password")).would_show[0].article_id == "pw"


# ---- Traditional or Simplified: the customer's script first -----------------------------------
def test_scripts_of_locales_and_texts():
    from deflect.models.language import HANS, HANT, chinese_script, script_of_locale

    assert [script_of_locale(x) for x in ("zh-TW", "zh_hk", "zh-Hant-CN", "zh-CN", "zh-SG", "zh-Hans", "zh")] == [
        HANT,
        HANT,
        HANT,
        HANS,
        HANS,
        HANS,
        None,
    ]
    assert script_of_locale("en-US") is None and script_of_locale(None) is None
    assert chinese_script("我忘記密碼了，怎麼重設") == HANT
    assert chinese_script("我忘记密码了怎么重置") == HANS
    assert chinese_script("退款") is None  # the same characters in both scripts
    assert chinese_script("reset password") is None


@pytest.fixture
def two_scripts(tmp_path, fake_embedder):
    """The same article in Traditional and in Simplified Chinese (scripts from the locale and
    from the text), and an English one."""
    from deflect.config import Settings
    from deflect.engine import Engine
    from deflect.kb_ingest.pipeline import ingest

    kb = tmp_path / "kb"
    for aid, locale, title, body in (
        ("pw-tw", "zh-TW", "重設密碼", "在登入頁面點選忘記密碼，我們會寄送重設連結。"),
        ("pw-cn", "", "重置密码", "在登录页面点击忘记密码，我们会发送重置链接。"),
        ("pw-en", "en", "Reset your password", "Click forgot password on the sign-in page."),
    ):
        loc = f"locale: {locale}\n" if locale else ""
        write(kb / f"{aid}.md", f"---\nid: {aid}\ntitle: {title}\n{loc}---\n{body}\n")
    settings = Settings(home=tmp_path / "home", min_score=0.0, reload_interval=0.0)
    ingest(kb, settings.home, fake_embedder)
    return Engine(settings, fake_embedder)


def test_the_customers_chinese_script_comes_first(two_scripts):
    bundle = two_scripts.index.get()
    assert bundle.scripts == {"pw-tw": "Hant", "pw-cn": "Hans"}
    assert _ids(two_scripts, description="忘記密碼，重設連結")[0] == "pw-tw"
    assert "pw-cn" not in _ids(two_scripts, description="忘記密碼，重設連結")
    assert _ids(two_scripts, description="忘记密码，重置链接") == ["pw-cn"]
    # the locale decides over the characters typed
    assert _ids(two_scripts, description="忘记密码", locale="zh-TW")[0] == "pw-tw"


def test_another_script_when_nothing_in_the_customers_passes(two_scripts):
    from deflect.engine import Engine

    bundle = two_scripts.index.get()
    hits = two_scripts.rank("忘记密码", 5, lang="zh", bundle=bundle)
    # a threshold the Simplified article misses: the Traditional one may be shown
    top_cn = next(h.score for h in hits if h.article_id == "pw-cn")
    kept = Engine.prefer_language(hits, "zh", bundle, top_cn + 1.0, "Hans")
    assert {h.article_id for h in kept} >= {"pw-tw", "pw-cn"}
    kept = Engine.prefer_language(hits, "zh", bundle, 0.0, "Hans")
    assert [h.article_id for h in kept] == ["pw-cn"]

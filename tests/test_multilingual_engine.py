"""The engine and the API with the real multilingual encoder (multilingual-e5-small, ONNX
int8, as served) on a small help center in English, Traditional Chinese, Simplified Chinese
and Indonesian; and the bad input a multilingual form gets."""

from __future__ import annotations

import pytest
from conftest import write

pytestmark = pytest.mark.slow

ARTICLES = (
    # id, locale, title, body: each topic has one article per language, except where noted
    (
        "pw-en",
        "en",
        "Reset your password",
        "Forgot your password? Click 'Forgot password' on the sign-in page "
        "and we e-mail you a reset link. The link works for one hour.",
    ),
    (
        "refund-en",
        "en",
        "Refunds",
        "You can ask for a refund within 14 days of a card payment. Refunds go back to the card you paid with.",
    ),
    # Chinese: the password article only in Traditional, the refund one only in Simplified
    (
        "pw-zh-tw",
        "zh-TW",
        "重設密碼",
        "忘記密碼了嗎？在登入頁面點選「忘記密碼」，我們會寄送重設連結到您的電子郵件。連結一小時內有效。",
    ),
    ("refund-zh-cn", "zh-CN", "退款", "信用卡付款后 14 天内可以申请退款。退款会退回到您付款时使用的银行卡。"),
    (
        "pw-id",
        "id",
        "Atur ulang kata sandi",
        "Lupa kata sandi? Klik 'Lupa kata sandi' di halaman masuk, "
        "kami kirim tautan untuk mengatur ulang ke email Anda. Tautan berlaku satu jam.",
    ),
    (
        "refund-id",
        "id",
        "Pengembalian dana",
        "Anda bisa minta pengembalian dana dalam 14 hari setelah "
        "pembayaran kartu. Dana dikembalikan ke kartu yang Anda pakai.",
    ),
)


@pytest.fixture(scope="module")
def app_client(tmp_path_factory, e5_embedder):
    from fastapi.testclient import TestClient

    from deflect.api.main import create_app
    from deflect.config import Settings
    from deflect.engine import Engine
    from deflect.kb_ingest.pipeline import ingest

    root = tmp_path_factory.mktemp("multilingual")
    for aid, locale, title, body in ARTICLES:
        write(root / "kb" / f"{aid}.md", f"---\nid: {aid}\ntitle: {title}\nlocale: {locale}\n---\n{body}\n")
    settings = Settings(home=root / "home", reload_interval=0.0, record_suggestions=False)
    summary = ingest(root / "kb", settings.home, e5_embedder)
    assert summary.languages == {"en": 2, "zh": 2, "id": 2}
    engine = Engine(settings, e5_embedder)
    with TestClient(create_app(settings, engine=engine)) as c:
        yield c


def _suggest(client, **body):
    r = client.post("/v1/suggest", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _top(client, **body) -> str:
    shown = _suggest(client, **body)["suggestions"]
    assert shown, body
    return shown[0]["article_id"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I forgot my password, how do I reset it?", "pw-en"),
        ("how do I get my money back for a card payment", "refund-en"),
        ("忘記密碼怎麼辦", "pw-zh-tw"),
        ("我忘记密码了怎么重置", "pw-zh-tw"),  # Simplified query, the Traditional article
        ("我要退款", "refund-zh-cn"),
        ("信用卡付款可以退款嗎", "refund-zh-cn"),  # Traditional query, the Simplified article
        ("lupa kata sandi gimana cara reset", "pw-id"),
        ("mau minta uang kembali dong", "refund-id"),
    ],
)
def test_each_language_finds_its_article(app_client, text, expected):
    assert _top(app_client, description=text) == expected


def test_the_customers_language_first_another_only_when_nothing_passes(app_client):
    shown = [
        x["article_id"]
        for x in _suggest(app_client, description="lupa kata sandi, password reset", locale="id")["suggestions"]
    ]
    assert shown[0] == "pw-id" and all(a.endswith("-id") for a in shown)
    # English words: no Indonesian article reaches the threshold, so the English one is shown
    shown = [x["article_id"] for x in _suggest(app_client, description="password reset", locale="id-ID")["suggestions"]]
    assert shown[0] == "pw-en"


def test_the_calibrated_threshold_of_the_multilingual_encoder_is_used(app_client):
    from deflect.config import E5, ENCODER_DEFAULTS

    out = _suggest(app_client, description="what is the capital of Mongolia and its population")
    assert out["abstained"] and out["reason"] == "low_confidence"
    assert ENCODER_DEFAULTS[E5].min_score > 0.8


@pytest.mark.parametrize(
    "text",
    [
        "密碼 password パスワード пароль 🔑",  # mixed scripts
        "😀😀😀🙏",  # emoji only
        "？？？！！！。。。...!!!",  # punctuation only
        "密" * 10_000,  # the longest description accepted, Chinese without a space
        "忘記密碼" * 2_500,
        "\u200b\u200b\ufeff",  # invisible characters only
    ],
)
def test_odd_input_gets_an_answer_or_an_abstention(app_client, text):
    out = _suggest(app_client, description=text)
    assert isinstance(out["abstained"], bool)
    if out["abstained"]:
        assert out["reason"] in {"low_confidence", "no_match", "out_of_scope"} and not out["suggestions"]


def test_twenty_thousand_chinese_characters_are_refused_naming_the_field(app_client):
    r = app_client.post("/v1/suggest", json={"description": "密" * 20_000})
    assert r.status_code == 422 and "description" in r.text


def test_a_locale_the_index_has_no_article_in_still_gets_an_answer(app_client):
    out = _suggest(app_client, description="I forgot my password", locale="fr-FR")
    assert out["suggestions"][0]["article_id"] == "pw-en"
    out = _suggest(app_client, description="忘記密碼", locale="ja")
    assert out["suggestions"][0]["article_id"] == "pw-zh-tw"


def test_a_malformed_locale_is_refused_naming_the_field(app_client):
    r = app_client.post("/v1/suggest", json={"description": "password", "locale": "not a locale!"})
    assert r.status_code == 422 and "locale" in r.text

"""The widget script, and the demo contact form that `make run` serves at /demo.

The demo pages come in English, Traditional Chinese, Simplified Chinese and Indonesian
(``?lang=zh-TW``; anything else is English). ``demo.html`` is a template: each ``{{key}}``
is filled from :data:`DEMO_TEXTS`, HTML-escaped, on the server, so the page needs no script
for its own text; its ``<html lang>`` is the language, and the widget follows it.
"""

from __future__ import annotations

import hashlib
import html
import re
from functools import lru_cache
from importlib import resources

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from deflect.api.deps import EngineDep

router = APIRouter(tags=["widget"])


@lru_cache(maxsize=4)
def _static(name: str) -> tuple[bytes, str]:
    data = resources.files("deflect").joinpath("static", name).read_bytes()
    return data, '"' + hashlib.sha256(data).hexdigest()[:16] + '"'


@router.get("/widget/deflect-widget.js", summary="The web-form widget (one script, no dependencies)")
@router.head("/widget/deflect-widget.js", include_in_schema=False)  # a CDN or a checker asks HEAD first
def widget_js(request: Request) -> Response:
    data, etag = _static("deflect-widget.js")
    headers = {"ETag": etag, "Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(content=data, media_type="text/javascript; charset=utf-8", headers=headers)


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> Response:
    return Response(status_code=204)


#: the demo pages' texts in each language (English is the default); every language has every key
DEMO_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "language_name": "English",
        "language": "Language",
        "title": "Contact support",
        "help_center": "Help center",
        "status": "Status",
        "hint": "Tell us what's going on. We usually answer within one working day.",
        "name": "Your name",
        "email": "Email",
        "product": "Product",
        "subject": "Subject",
        "message": "How can we help?",
        "placeholder": "Describe what happened and what you expected. Include any error message you see.",
        "send": "Send message",
        "sent_title": "Message sent",
        "sent_heading": "Thanks, we got your message",
        "sent_body": "We will answer within one working day.",
        "resolved_title": "Glad it helped",
        "resolved_heading": "Glad that helped",
        "resolved_body": "No message was sent.",
        "back": "Back to the contact form",
        "no_article": "No such article",
    },
    "zh-TW": {
        "language_name": "繁體中文",
        "language": "語言",
        "title": "聯絡客服",
        "help_center": "說明中心",
        "status": "服務狀態",
        "hint": "請告訴我們發生了什麼事。我們通常會在一個工作天內回覆。",
        "name": "您的姓名",
        "email": "電子郵件",
        "product": "產品",
        "subject": "主旨",
        "message": "有什麼我們可以幫忙的嗎？",
        "placeholder": "請說明發生了什麼事、您原本預期的結果，以及看到的錯誤訊息。",
        "send": "送出訊息",
        "sent_title": "訊息已送出",
        "sent_heading": "謝謝，我們已收到您的訊息",
        "sent_body": "我們會在一個工作天內回覆。",
        "resolved_title": "很高興幫上忙",
        "resolved_heading": "很高興這對您有幫助",
        "resolved_body": "沒有送出任何訊息。",
        "back": "返回聯絡表單",
        "no_article": "找不到這篇文章",
    },
    "zh-CN": {
        "language_name": "简体中文",
        "language": "语言",
        "title": "联系客服",
        "help_center": "帮助中心",
        "status": "服务状态",
        "hint": "请告诉我们遇到了什么问题。我们通常会在一个工作日内回复。",
        "name": "您的姓名",
        "email": "电子邮箱",
        "product": "产品",
        "subject": "主题",
        "message": "我们能为您做些什么？",
        "placeholder": "请描述发生了什么、您期望的结果，以及看到的错误信息。",
        "send": "发送消息",
        "sent_title": "消息已发送",
        "sent_heading": "谢谢，我们已收到您的消息",
        "sent_body": "我们会在一个工作日内回复。",
        "resolved_title": "很高兴能帮到您",
        "resolved_heading": "很高兴这对您有帮助",
        "resolved_body": "没有发送任何消息。",
        "back": "返回联系表单",
        "no_article": "找不到这篇文章",
    },
    "id": {
        "language_name": "Bahasa Indonesia",
        "language": "Bahasa",
        "title": "Hubungi tim dukungan",
        "help_center": "Pusat bantuan",
        "status": "Status layanan",
        "hint": "Ceritakan apa yang terjadi. Kami biasanya membalas dalam satu hari kerja.",
        "name": "Nama Anda",
        "email": "Email",
        "product": "Produk",
        "subject": "Subjek",
        "message": "Ada yang bisa kami bantu?",
        "placeholder": "Jelaskan apa yang terjadi dan apa yang Anda harapkan. Sertakan pesan error yang muncul.",
        "send": "Kirim pesan",
        "sent_title": "Pesan terkirim",
        "sent_heading": "Terima kasih, pesan Anda sudah kami terima",
        "sent_body": "Kami akan membalas dalam satu hari kerja.",
        "resolved_title": "Senang bisa membantu",
        "resolved_heading": "Senang informasinya membantu",
        "resolved_body": "Tidak ada pesan yang dikirim.",
        "back": "Kembali ke formulir kontak",
        "no_article": "Artikel tidak ditemukan",
    },
}
#: the product options of the demo form, in each language
DEMO_PRODUCTS: dict[str, tuple[str, ...]] = {
    "en": (
        "Tidewell web app",
        "Tidewell for iOS",
        "Tidewell for Android",
        "Online booking page",
        "Invoicing and payments",
    ),
    "zh-TW": (
        "Tidewell 網頁版",
        "Tidewell iOS 版",
        "Tidewell Android 版",
        "線上預約頁面",
        "發票與付款",
    ),
    "zh-CN": (
        "Tidewell 网页版",
        "Tidewell iOS 版",
        "Tidewell Android 版",
        "在线预约页面",
        "发票与付款",
    ),
    "id": (
        "Aplikasi web Tidewell",
        "Tidewell untuk iOS",
        "Tidewell untuk Android",
        "Halaman booking online",
        "Faktur dan pembayaran",
    ),
}
_DEMO_LANGS = {code.lower(): code for code in DEMO_TEXTS}
_SLOT = re.compile(r"\{\{(\w+)\}\}")


def demo_lang(lang: str | None) -> str:
    """One of the demo's languages for a ``?lang=`` value (any case, ``_`` as ``-``); English
    for anything else."""
    return _DEMO_LANGS.get((lang or "").strip().replace("_", "-").lower(), "en")


def _q(lang: str) -> str:
    """The query string that keeps ``lang`` across the demo's pages (none for English)."""
    return "" if lang == "en" else "?lang=" + lang


def _switch(lang: str) -> str:
    """The language switch: each language named in itself; the current one is not a link."""
    out = []
    for code, t in DEMO_TEXTS.items():
        name = html.escape(t["language_name"])
        if code == lang:
            out.append(f'<span lang="{code}" aria-current="true">{name}</span>')
        else:
            out.append(f'<a href="/demo{_q(code)}" lang="{code}" hreflang="{code}">{name}</a>')
    return "".join(out)


@router.get("/demo", response_class=HTMLResponse, summary="The demo contact form, with the widget on it")
def demo(lang: str | None = None) -> HTMLResponse:
    code = demo_lang(lang)
    t = DEMO_TEXTS[code]
    slots = {k: html.escape(v) for k, v in t.items()}
    slots["products"] = "".join(f"<option>{html.escape(p)}</option>" for p in DEMO_PRODUCTS[code])
    slots.update(lang=code, q=_q(code), switch=_switch(code))
    page = _SLOT.sub(lambda m: slots[m.group(1)], _static("demo.html")[0].decode("utf-8"))
    return HTMLResponse(page, headers={"Content-Language": code})


def _page(lang: str, title: str, body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html lang='{lang}'><head><meta charset='utf-8'><title>"
        + html.escape(title)
        + " · Tidewell</title><style>body{font:16px/1.55 Georgia,serif;max-width:720px;margin:2rem auto;"
        "padding:0 1rem;color:#222}a{color:#0b5cab}</style></head><body>"
        + body
        + f"<p><a href='/demo{_q(lang)}'>{html.escape(DEMO_TEXTS[lang]['back'])}</a></p></body></html>",
        status_code=status_code,
        headers={"Content-Language": lang},
    )


@router.api_route("/demo/sent", methods=["GET", "POST"], response_class=HTMLResponse, include_in_schema=False)
async def demo_sent(request: Request, lang: str | None = None) -> HTMLResponse:
    await request.body()  # the demo keeps nothing: the message would go to the help desk here
    code = demo_lang(lang)
    t = {k: html.escape(v) for k, v in DEMO_TEXTS[code].items()}
    return _page(code, DEMO_TEXTS[code]["sent_title"], f"<h1>{t['sent_heading']}</h1><p>{t['sent_body']}</p>")


@router.get("/demo/resolved", response_class=HTMLResponse, include_in_schema=False)
def demo_resolved(lang: str | None = None) -> HTMLResponse:
    code = demo_lang(lang)
    t = {k: html.escape(v) for k, v in DEMO_TEXTS[code].items()}
    return _page(
        code, DEMO_TEXTS[code]["resolved_title"], f"<h1>{t['resolved_heading']}</h1><p>{t['resolved_body']}</p>"
    )


@router.get("/demo/articles/{article_id}", response_class=HTMLResponse, include_in_schema=False)
def demo_article(article_id: str, engine: EngineDep, lang: str | None = None) -> HTMLResponse:
    code = demo_lang(lang)
    bundle = engine.index.get()
    art = bundle.articles.get(article_id)
    if art is None:
        missing = DEMO_TEXTS[code]["no_article"]
        return _page(code, missing, f"<h1>{html.escape(missing)}</h1>", status_code=404)
    paras = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in art.body.split("\n\n") if p.strip())
    # the page's own text is in the demo's language; the article in its own (when it has a locale)
    art_lang = f" lang='{html.escape(art.locale.replace('_', '-'))}'" if art.locale else ""
    return _page(code, art.title, f"<article{art_lang}><h1>{html.escape(art.title)}</h1>{paras}</article>")

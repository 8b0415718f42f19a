"""The widget script, and the demo contact form that `make run` serves at /demo."""

from __future__ import annotations

import hashlib
import html
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
def widget_js(request: Request) -> Response:
    data, etag = _static("deflect-widget.js")
    headers = {"ETag": etag, "Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(content=data, media_type="text/javascript; charset=utf-8", headers=headers)


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> Response:
    return Response(status_code=204)


@router.get("/demo", response_class=HTMLResponse, summary="The demo contact form, with the widget on it")
def demo() -> HTMLResponse:
    return HTMLResponse(_static("demo.html")[0].decode("utf-8"))


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>"
        + html.escape(title)
        + " · Tidewell</title><style>body{font:16px/1.55 Georgia,serif;max-width:720px;margin:2rem auto;"
        "padding:0 1rem;color:#222}a{color:#0b5cab}</style></head><body>"
        + body
        + "<p><a href='/demo'>Back to the contact form</a></p></body></html>"
    )


@router.api_route("/demo/sent", methods=["GET", "POST"], response_class=HTMLResponse, include_in_schema=False)
async def demo_sent(request: Request) -> HTMLResponse:
    await request.body()  # the demo keeps nothing: the message would go to the help desk here
    return _page("Message sent", "<h1>Thanks, we got your message</h1><p>We will answer within one working day.</p>")


@router.get("/demo/resolved", response_class=HTMLResponse, include_in_schema=False)
def demo_resolved() -> HTMLResponse:
    return _page("Glad it helped", "<h1>Glad that helped</h1><p>No message was sent.</p>")


@router.get("/demo/articles/{article_id}", response_class=HTMLResponse, include_in_schema=False)
def demo_article(article_id: str, engine: EngineDep) -> HTMLResponse:
    bundle = engine.index.get()
    art = bundle.articles.get(article_id)
    if art is None:
        return HTMLResponse(status_code=404, content="<h1>No such article</h1>")
    paras = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in art.body.split("\n\n") if p.strip())
    return _page(art.title, f"<h1>{html.escape(art.title)}</h1>{paras}")

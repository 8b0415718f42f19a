import json

import pytest

from deflect.core.errors import IngestError
from deflect.kb_ingest.sources import Parsed, Skipped, read_source
from tests.conftest import write


def parsed(records):
    return [r for r in records if isinstance(r, Parsed)]


def skipped(records):
    return [r for r in records if isinstance(r, Skipped)]


def test_markdown_folder_with_front_matter(tmp_path):
    write(
        tmp_path / "kb" / "billing" / "refunds.md",
        "---\nid: bil-7\ntitle: Refund policy\nurl: https://x/bil-7\nsection: billing\ntags: [refund, money]\n"
        "updated_at: 2026-01-02\n---\n# Refund policy\n\nWe refund within 14 days.\n\n## Exceptions\n\nNone.\n",
    )
    write(tmp_path / "kb" / "no-front.md", "# Change your password\n\nGo to settings.\n")
    write(tmp_path / "kb" / "page.html", "<html><body><h1>Export data</h1><p>Use the export button.</p></body></html>")
    write(tmp_path / "kb" / "note.txt", "Plain text article\nsecond line")
    recs = list(read_source(tmp_path / "kb"))
    arts = {r.article.id: r.article for r in parsed(recs)}
    assert set(arts) == {"bil-7", "no-front", "page", "note"}
    a = arts["bil-7"]
    assert (a.title, a.url, a.section, a.tags, a.updated_at) == (
        "Refund policy",
        "https://x/bil-7",
        "billing",
        ("refund", "money"),
        "2026-01-02",
    )
    assert a.body.startswith("We refund within 14 days.") and "Exceptions" in a.body
    assert arts["no-front"].title == "Change your password"
    assert arts["page"].title == "Export data"
    assert arts["note"].title == "note" and "second line" in arts["note"].body
    assert a.content_hash and a.content_hash != arts["page"].content_hash


def test_folder_bad_files_are_skipped_with_reason(tmp_path):
    kb = tmp_path / "kb"
    write(kb / "good.md", "# Good\n\nfine text")
    write(kb / "latin1.md", "# Caf\xe9\n\nbody".encode("latin-1"))
    write(kb / "empty.md", "")
    write(kb / "badfront.md", "---\ntitle: [unclosed\n---\nbody\n")
    write(kb / "onlyscript.html", "<html><body><script>x()</script></body></html>")
    recs = list(read_source(kb))
    assert [r.article.id for r in parsed(recs)] == ["good"]
    reasons = {s.origin.split("/")[-1].split(":")[0]: s.reason for s in skipped(recs)}
    assert "not UTF-8" in reasons["latin1.md"]
    assert reasons["empty.md"] == "empty file"
    assert "invalid front matter" in reasons["badfront.md"]
    assert "empty body" in reasons["onlyscript.html"]


def test_csv_required_and_optional_columns_and_bad_rows(tmp_path):
    p = write(
        tmp_path / "kb.csv",
        "id,title,body,url,tags\n"
        '1,Reset password,Go to <b>settings</b>,https://x/1,"a,b"\n'
        "2,Too many,a,b,c,d,e\n"
        "3,,no title,,\n"
        '4,Plain,"multi\nline body",,\n',
    )
    recs = list(read_source(p))
    arts = {r.article.id: r.article for r in parsed(recs)}
    assert set(arts) == {"1", "4"}
    assert arts["1"].body == "Go to settings" and arts["1"].tags == ("a", "b")
    sk = {s.origin.rsplit(":", 1)[1]: s.reason for s in skipped(recs)}
    assert "fields" in sk["3"]  # line 3 has too many fields
    assert "missing title" in sk["4"]


def test_csv_missing_required_column_fails_clearly(tmp_path):
    p = write(tmp_path / "kb.csv", "id,name\n1,x\n")
    with pytest.raises(IngestError, match="missing required column.*title.*body"):
        list(read_source(p))


def test_csv_not_utf8_and_empty(tmp_path):
    with pytest.raises(IngestError, match="not UTF-8"):
        list(read_source(write(tmp_path / "a.csv", "id,title,body\n1,Caf\xe9,x\n".encode("latin-1"))))
    with pytest.raises(IngestError, match="empty file"):
        list(read_source(write(tmp_path / "b.csv", "")))


def test_jsonl_bad_lines_are_reported_with_line_numbers(tmp_path):
    p = write(
        tmp_path / "kb.jsonl",
        "\n".join(
            [
                json.dumps({"id": "a", "title": "A", "body": "alpha text", "tags": ["x"]}),
                "{not json",
                json.dumps(["a list"]),
                json.dumps({"id": "b", "title": "B"}),
                json.dumps({"id": "c", "title": {"x": 1}, "body": "x"}),
                json.dumps({"id": 5, "title": "Numeric id", "body": "<p>html body</p>"}),
            ]
        ),
    )
    recs = list(read_source(p))
    assert sorted(r.article.id for r in parsed(recs)) == ["5", "a"]
    sk = {int(s.origin.rsplit(":", 1)[1]): s.reason for s in skipped(recs)}
    assert "invalid JSON" in sk[2] and "not a JSON object" in sk[3] and "missing body" in sk[4]
    assert "title" in sk[5]


def test_zendesk_pages_and_drafts(tmp_path):
    page1 = {
        "articles": [
            {
                "id": 101,
                "title": "Two-factor",
                "body": "<p>Turn on <strong>2FA</strong></p><script>x</script>",
                "html_url": "https://zd/101",
                "locale": "en-us",
                "section_id": 7,
                "label_names": ["security"],
                "draft": False,
                "updated_at": "2026-01-01T00:00:00Z",
            },
            {"id": 102, "title": "Secret draft", "body": "<p>wip</p>", "draft": True},
        ],
        "next_page": "https://zd/api/v2/help_center/articles.json?page=2",
    }
    page2 = {
        "articles": [
            {"id": 103, "title": "Broken", "body": "<div><p>unclosed <b>tags", "draft": False},
            "not an object",
        ],
        "next_page": None,
    }
    d = tmp_path / "zd"
    write(d / "page1.json", json.dumps(page1))
    write(d / "page2.json", json.dumps(page2))
    write(d / "page3.json", "{truncated")
    recs = list(read_source(d))
    arts = {r.article.id: r.article for r in parsed(recs)}
    assert set(arts) == {"101", "103"}
    a = arts["101"]
    assert a.body == "Turn on 2FA" and a.url == "https://zd/101" and a.section == "7" and a.tags == ("security",)
    assert "unclosed tags" in arts["103"].body
    reasons = " / ".join(s.reason for s in skipped(recs))
    assert "draft" in reasons and "not an object" in reasons and "invalid JSON" in reasons


def test_unknown_source_and_format(tmp_path):
    with pytest.raises(IngestError, match="no such file"):
        list(read_source(tmp_path / "nope"))
    with pytest.raises(IngestError, match="unknown format"):
        list(read_source(tmp_path, "pdf"))
    with pytest.raises(IngestError, match="no Markdown"):
        list(read_source(tmp_path))


def test_article_urls_other_than_http_are_reported_and_skipped(tmp_path):
    bad = ["javascript:alert(1)", "JaVaScRiPt:alert(1)", "java\tscript:alert(1)", "data:text/html,x",
           "vbscript:msgbox(1)", "file:///etc/passwd", "\\\\evil\\share", "jav ascript:x"]  # fmt: skip
    good = ["https://help.example.com/a", "http://help.example.com/b", "/help/c", "//help.example.com/d", "e.html"]
    rows = [{"id": f"bad{i}", "title": "T", "body": "text", "url": u} for i, u in enumerate(bad)]
    rows += [{"id": f"good{i}", "title": "T", "body": "text", "url": u} for i, u in enumerate(good)]
    p = write(tmp_path / "kb.jsonl", "\n".join(json.dumps(r) for r in rows))
    recs = list(read_source(p))
    assert sorted(r.article.id for r in parsed(recs)) == [f"good{i}" for i in range(len(good))]
    sk = {int(s.origin.rsplit(":", 1)[1]): s.reason for s in skipped(recs)}
    assert sorted(sk) == list(range(1, len(bad) + 1))
    assert "bad0: url 'javascript:alert(1)' is not an http(s) link" in sk[1]
    md = write(tmp_path / "kb" / "x.md", '---\nid: x\ntitle: X\nurl: "javascript:alert(1)"\n---\nBody.\n')
    (s,) = skipped(read_source(md.parent))
    assert s.origin.endswith("x.md") and "not an http(s) link" in s.reason


def test_which_links_are_allowed():
    from deflect.models.documents import link_allowed

    assert link_allowed("https://x/a") and link_allowed("/a") and not link_allowed("javascript:x")
    assert not link_allowed("") and not link_allowed(" https://x") and not link_allowed("https:\\\\x")


@pytest.mark.parametrize("tail", ['4,D,"delta\ncontinued"\n5,E,epsilon\n', "4,D,delta\n5,E,epsilon\n"])
def test_csv_an_unclosed_quote_is_reported_and_the_rows_after_it_are_read(tmp_path, tail):
    """A quote opened and never closed used to make the rest of the file one field (one
    article, `skipped 0`); now its row is reported and the next line read again."""
    p = write(
        tmp_path / "kb.csv",
        'id,title,body\n1,A,"alpha text"\n2,B,"beta text with an unclosed quote\n3,C,gamma text\n' + tail,
    )
    recs = list(read_source(p))
    assert sorted(r.article.id for r in parsed(recs)) == ["1", "3", "4", "5"]
    (bad,) = skipped(recs)
    assert bad.origin.endswith("kb.csv:3") and ("quote" in bad.reason or "malformed CSV" in bad.reason)
    bodies = {r.article.id: r.article.body for r in parsed(recs)}
    assert "gamma" not in bodies["1"] and bodies["3"] == "gamma text"

from deflect.kb_ingest.clean import html_to_sections, looks_like_html, markdown_to_sections, sections_to_text

HTML = """<html><head><title>Doc title</title><style>.x{color:red}</style><script>var a = 1;</script></head>
<body><nav><a href="/">Home</a> &gt; <a href="/help">Help</a></nav>
<header>Site header</header>
<h1>Reset your password</h1>
<p>If you forgot it, <b>don't panic</b>.<br>It happens.</p>
<h2>Steps</h2>
<ol><li>Open the <em>sign-in</em> page</li><li>Click <a href="#">Forgot password</a></li></ol>
<h3>On mobile</h3><p>Same thing.</p>
<h2>Plans</h2>
<table><tr><th>Plan</th><th>Price</th></tr><tr><td>Team</td><td>$39</td></tr></table>
<footer>Copyright</footer>
<script>tracking()</script>
</body></html>"""


def test_html_drops_chrome_and_keeps_structure():
    sections, title = html_to_sections(HTML)
    assert title == "Reset your password"
    text = sections_to_text(sections)
    for gone in ("color:red", "var a", "tracking", "Site header", "Copyright", "Home"):
        assert gone not in text
    assert "If you forgot it, don't panic.\nIt happens." in text
    assert "- Open the sign-in page" in text and "- Click Forgot password" in text
    assert "Plan | Price" in text and "Team | $39" in text
    paths = [s.heading_path for s in sections]
    assert ("Reset your password", "Steps", "On mobile") in paths
    assert ("Reset your password", "Plans") in paths


def test_broken_html_is_parsed_leniently():
    sections, _ = html_to_sections("<div><p>Unclosed <b>bold <li>item</div></span><h2>Next</h2>text after")
    text = sections_to_text(sections)
    assert "Unclosed bold" in text and "item" in text and "text after" in text


def test_markdown_headings_lists_tables_and_code():
    md = (
        "# Title\n\nIntro text.\n\n## Setup\n\n1. First\n2. Second\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n```\ncurl -X POST x\n```\n"
    )
    sections, title = markdown_to_sections(md)
    assert title == "Title"
    text = sections_to_text(sections)
    assert "- First" in text and "1 | 2" in text and "curl -X POST x" in text
    assert sections[-1].heading_path == ("Title", "Setup")


def test_looks_like_html():
    assert looks_like_html("<p>hi</p>")
    assert not looks_like_html("a < b and c > d")

from deflect.kb_ingest.chunking import chunk_sections, split_text
from deflect.kb_ingest.clean import Section
from deflect.models.documents import Chunk
from deflect.models.embedders import KeywordEmbedder

emb = KeywordEmbedder(["x"])


def test_short_text_is_one_chunk():
    text = "one two three"
    assert split_text(text, emb.token_spans(text), 10, 2) == ["one two three"]


def test_windows_respect_length_and_overlap():
    words = [f"w{i}" for i in range(100)]
    text = " ".join(words)
    pieces = split_text(text, emb.token_spans(text), 30, 10)
    assert all(len(p.split()) <= 30 for p in pieces)
    assert pieces[0].split()[0] == "w0" and pieces[-1].split()[-1] == "w99"
    # consecutive windows overlap by 10 tokens
    assert pieces[0].split()[-10:] == pieces[1].split()[:10]
    covered = set()
    for p in pieces:
        covered.update(p.split())
    assert covered == set(words)


def test_windows_prefer_sentence_ends():
    text = " ".join(["alpha"] * 25) + " . " + " ".join(["beta"] * 20)
    pieces = split_text(text, emb.token_spans(text), 30, 0)
    assert "beta" not in pieces[0]  # cut at the sentence end, not mid-way through "beta"


def test_chinese_windows_end_at_chinese_sentence_ends_without_spaces():
    sentences = [f"第{i:02d}句讲的是怎么设置预约页面" + "。！？；"[i % 4] for i in range(30)]
    text = "".join(sentences)
    spans = [(i, i + 1) for i in range(len(text))]  # one token per character, as Chinese is tokenised
    pieces = split_text(text, spans, 60, 0)
    assert len(pieces) > 1 and "".join(pieces) == text
    assert all(p[-1] in "。！？；" for p in pieces)


def test_chunks_keep_heading_paths_and_merge_tiny_sections():
    sections = [
        Section((), "Intro " + "word " * 40),
        Section(("Setup",), "tiny"),
        Section(("Setup", "Step one"), "Do this " * 20),
        Section(("Billing",), "Pay " * 300),
    ]
    chunks = chunk_sections("a1", sections, emb.token_spans, max_tokens=100, overlap=10, min_tokens=5)
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert chunks[0].heading_path == ()
    assert chunks[1].heading_path == ("Setup",) and "tiny" in chunks[1].text and "Step one" in chunks[1].text
    billing = [c for c in chunks if c.heading_path == ("Billing",)]
    assert len(billing) >= 3


def test_embed_text_starts_with_title_and_headings():
    c = Chunk("a1", 0, ("Setup", "Step one"), "Do this")
    assert c.embed_text("My title") == "My title\nSetup\nStep one\nDo this"

"""Loading files into documents: exact stored text, HTML parsing, skipped files, encodings, ids."""
from __future__ import annotations

import os

import pytest

from rag.documents import load_paths, make_document
from rag.errors import DocumentError


def _skipped_names(result) -> dict[str, str]:
    return {os.path.basename(s.path): s.reason for s in result.skipped}


def test_txt_text_is_stored_exactly(tmp_path):
    raw = "Title line\r\n\r\n  Indented  text with  double spaces.\tTab.\nCaf\u00e9 \u2019quote\u2019 \u00a33bn\n\n\ntrailing   \n"
    path = tmp_path / "note.txt"
    path.write_bytes(raw.encode("utf-8"))
    (doc,) = load_paths([path]).documents
    assert doc.text == raw
    assert doc.title == "Title line"
    assert doc.metadata["encoding"] == "utf-8"


def test_md_text_is_stored_exactly_with_heading_as_title(tmp_path):
    raw = "# Release notes\n\n* item one\n* item two\n\n```\ncode  block\n```\n"
    path = tmp_path / "notes.md"
    path.write_text(raw, encoding="utf-8", newline="")
    (doc,) = load_paths([path]).documents
    assert doc.text == raw
    assert doc.title == "Release notes"


def test_utf8_bom_is_dropped_and_rest_is_exact(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfHello there.\nSecond line.\n")
    (doc,) = load_paths([path]).documents
    assert doc.text == "Hello there.\nSecond line.\n"


def test_html_is_parsed_to_visible_text_with_title(tmp_path):
    path = tmp_path / "page.html"
    path.write_text(
        "<!doctype html><html><head><title>The Page Title</title>"
        "<style>body { color: red; } .secret-style {}</style>"
        "<script>var secretScript = 1; alert('x');</script></head>"
        "<body><h1>Heading here</h1><p>First paragraph with <b>bold</b> text.</p>"
        "<script>document.write('inline secret')</script>"
        "<p>Second paragraph.</p><noscript>enable js</noscript></body></html>",
        encoding="utf-8")
    (doc,) = load_paths([path]).documents
    assert doc.title == "The Page Title"
    assert "Heading here" in doc.text
    assert "First paragraph with" in doc.text and "bold" in doc.text
    assert "Second paragraph." in doc.text
    for hidden in ("secretScript", "alert", "inline secret", "color: red", "secret-style", "<p>", "<b>"):
        assert hidden not in doc.text
    assert doc.metadata["format"] == "html"


def test_bad_files_are_reported_by_name_and_the_rest_load(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("A perfectly good document.\n", encoding="utf-8")
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    blank = tmp_path / "blank.md"
    blank.write_text(" \n\t\n", encoding="utf-8")
    dangling = tmp_path / "gone.txt"
    dangling.symlink_to(tmp_path / "does-not-exist.txt")
    missing = tmp_path / "missing.txt"
    unsupported = tmp_path / "table.csv"
    unsupported.write_text("a,b\n1,2\n", encoding="utf-8")
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(b"%PDF-1.4 ...")

    result = load_paths([binary, empty, blank, good, dangling, missing, unsupported, pdf])

    assert [d.title for d in result.documents] == ["A perfectly good document."]
    skipped = _skipped_names(result)
    assert set(skipped) == {"blob.txt", "empty.txt", "blank.md", "gone.txt", "missing.txt", "table.csv", "paper.pdf"}
    assert "binary" in skipped["blob.txt"]
    assert "empty" in skipped["empty.txt"] and "empty" in skipped["blank.md"]
    assert "unsupported" in skipped["table.csv"] and ".csv" in skipped["table.csv"]
    for reason in skipped.values():
        assert reason.strip()


def test_bad_files_inside_a_directory_are_reported_and_the_rest_load(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("Document A talks about apples.\n", encoding="utf-8")
    (corpus / "sub").mkdir()
    (corpus / "sub" / "b.md").write_text("# B\n\nDocument B talks about bananas.\n", encoding="utf-8")
    (corpus / "zero.txt").write_bytes(b"\x00\x01\x02\x03")
    (corpus / "dangling.md").symlink_to(corpus / "nowhere.md")
    result = load_paths([corpus])
    assert sorted(d.title for d in result.documents) == ["B", "Document A talks about apples."]
    assert set(_skipped_names(result)) == {"zero.txt", "dangling.md"}


def test_cp1252_bytes_are_decoded(tmp_path):
    path = tmp_path / "legacy.txt"
    path.write_bytes(b"Caf\xe9 \x93quoted\x94 \x96 price \x80 5.\n")
    (doc,) = load_paths([path]).documents
    assert doc.text == "Caf\u00e9 \u201cquoted\u201d \u2013 price \u20ac 5.\n"
    assert doc.metadata["encoding"] == "cp1252"


def test_ids_are_stable_across_loads_and_distinct_per_file(tmp_path):
    for name in ("one.txt", "two.txt", "three.md"):
        (tmp_path / name).write_text(f"Contents of {name}.\n", encoding="utf-8")
    first = load_paths([tmp_path])
    second = load_paths([tmp_path])
    ids = [d.id for d in first.documents]
    assert ids == [d.id for d in second.documents]
    assert len(set(ids)) == 3
    # The same file named twice is one document.
    again = load_paths([tmp_path / "one.txt", tmp_path / "one.txt"])
    assert len(again.documents) == 1 and again.documents[0].id in ids


def test_make_document_refuses_blank_text():
    with pytest.raises(DocumentError):
        make_document("   \n", source="blank.txt")
    doc = make_document("Some text.", source="mem/a.txt")
    assert doc.id == make_document("Other text.", source="mem/a.txt").id
    assert doc.title == "Some text."

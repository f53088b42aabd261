"""Loaders for every format, with real files made here: exact text, metadata, page offsets, tables as
rows, page furniture dropped, and the bounds (PDF decompression bombs, zip bombs, surrogates)."""
from __future__ import annotations

import os
import tracemalloc

import pytest

from formats_support import (FURNITURE, MENU_HTML, PDF_PAGE_ONE, PDF_PAGE_TWO, docx_with_table, pdf_bomb,
                             pdf_text_decoding_to_surrogates, pptx_two_slides, raw_pdf, text_op, two_page_pdf,
                             zip_bomb)
from rag.documents import load_paths, page_of
from rag.loaders import (BinaryContentError, BrokenDocumentError, DocumentTooLargeError, EmptyDocumentError,
                         Limits, UnsupportedFormatError, format_for, load_bytes)


def test_pdf_pages_are_recorded_with_their_start_offsets_and_metadata():
    loaded = load_bytes(two_page_pdf(), "report.pdf")
    pages = loaded.metadata["pages"]
    assert pages == [0, len(PDF_PAGE_ONE) + 2]
    # (the PDF wraps lines: compare words)
    assert loaded.text[pages[0]:pages[1]].split() == PDF_PAGE_ONE.split()
    assert loaded.text[pages[1]:].split() == PDF_PAGE_TWO.split()
    assert loaded.title == "Harbour report"
    assert loaded.metadata["author"] == "Orla Brennan"
    assert loaded.metadata["date"].startswith("2024-05-01")
    assert loaded.metadata["format"] == "pdf"


def test_page_of_maps_offsets_to_pages(tmp_path):
    (tmp_path / "r.pdf").write_bytes(two_page_pdf())
    (doc,) = load_paths([tmp_path / "r.pdf"]).documents
    second = doc.text.index("Orla Brennan")
    assert page_of(doc, 0) == 1 and page_of(doc, second - 3) == 1 and page_of(doc, second) == 2
    assert page_of(doc, len(doc.text)) == 2


def test_pdf_decompression_bomb_is_refused_without_the_memory():
    bomb = pdf_bomb()  # 10 pages x 70 MB of Flate streams
    assert len(bomb) < 1_000_000
    tracemalloc.start()
    try:
        with pytest.raises(DocumentTooLargeError, match="limit"):
            load_bytes(bomb, "bomb.pdf")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 80 * 1024 * 1024  # the 16 MiB stream cap (plus pypdf's working copies), not 700 MB


def test_pdf_total_decompressed_bytes_are_bounded_across_pages():
    page = b" " * 400_000
    pages = [page] * 6  # each under the per-stream cap, 2.4 MB together
    with pytest.raises(DocumentTooLargeError, match="decompressed"):
        load_bytes(raw_pdf(pages), "many.pdf", limits=Limits(max_decompressed_bytes=1_000_000))


def test_pdf_page_count_and_time_are_bounded():
    with pytest.raises(DocumentTooLargeError, match="pages"):
        load_bytes(raw_pdf([text_op("page")] * 5), "long.pdf", limits=Limits(max_pages=4))
    heavy = raw_pdf([text_op("busy page") * 3000])
    with pytest.raises(DocumentTooLargeError, match="longer than"):  # stopped inside the page, not after it
        load_bytes(heavy, "slow.pdf", limits=Limits(time_budget_s=0.01))


def test_pdf_text_that_decodes_to_lone_surrogates_is_sanitised():
    loaded = load_bytes(pdf_text_decoding_to_surrogates(), "odd.pdf")
    loaded.text.encode("utf-8")  # would raise on a lone surrogate
    assert "\ufffd" in loaded.text and "Hello" in loaded.text


@pytest.mark.parametrize("data", [b"%PDF-1.4 garbage", b"not a pdf at all", raw_pdf([text_op("x")])[:200]])
def test_broken_pdfs_are_refused_as_broken(data):
    with pytest.raises((BrokenDocumentError, EmptyDocumentError)):
        load_bytes(data, "broken.pdf")


def test_html_keeps_main_content_and_tables_as_rows_and_drops_furniture():
    loaded = load_bytes(MENU_HTML.encode(), "menu.html")
    lines = loaded.text.splitlines()
    assert "Croissant | 2.50 EUR" in lines and "Pastry | Price" in lines
    assert "Our bakery menu" in lines
    assert any("wood-fired oven" in line for line in lines)
    for furniture in FURNITURE:
        assert furniture not in loaded.text
    assert loaded.title == "Cafe Lumiere - Menu"
    assert loaded.metadata["author"] == "Ann Baker" and loaded.metadata["date"] == "2024-03-05"


def test_markdown_front_matter_becomes_metadata_and_offsets_stay_exact():
    raw = ("---\ntitle: Release notes\nauthor: Ann\ndate: 2024-03-01\ntags: [release, ops]\nyear: 2024\n"
           "format: evil\n---\n# Version 2\n\nThe importer is twice as fast.\n")
    loaded = load_bytes(raw.encode(), "notes.md")
    assert loaded.title == "Release notes"
    assert loaded.metadata["author"] == "Ann" and loaded.metadata["tags"] == ["release", "ops"]
    assert loaded.metadata["date"] == "2024-03-01" and loaded.metadata["year"] == 2024
    assert loaded.metadata["format"] == "markdown"  # a file cannot override the service's own keys
    offset = loaded.metadata["body_offset"]
    assert raw[offset:] == loaded.text  # citations index the body; body_offset maps them into the file
    start = loaded.text.index("twice")
    assert raw[offset + start:offset + start + 5] == "twice"


def test_markdown_without_front_matter_is_stored_exactly_and_titled_by_its_heading():
    raw = "Intro line\n\nSome text.\n\n## Real heading\n\nMore.\n"
    loaded = load_bytes(raw.encode(), "a.md")
    assert loaded.text == raw and loaded.title == "Real heading" and "body_offset" not in loaded.metadata


def test_markdown_front_matter_with_yaml_aliases_is_not_expanded():
    raw = "---\na: &x [1, 2]\nb: [*x, *x, *x]\n---\n# Body\ntext\n"
    loaded = load_bytes(raw.encode(), "bomb.md")
    assert "a" not in loaded.metadata and loaded.text == raw  # left as text, never expanded


def test_docx_paragraphs_tables_and_core_properties():
    loaded = load_bytes(docx_with_table(), "prices.docx")
    lines = loaded.text.splitlines()
    assert lines[0] == "Summer prices"
    assert "Croissant | 2.50 EUR" in lines and "Pastry | Price" in lines
    assert lines.index("Pastry | Price") < lines.index("Prices for cakes to order are on request.")
    assert loaded.title == "Bakery price list"
    assert loaded.metadata["author"] == "Ann Baker" and loaded.metadata["date"].startswith("2024-03-05")


def test_pptx_slides_are_pages():
    loaded = load_bytes(pptx_two_slides(), "review.pptx")
    pages = loaded.metadata["pages"]
    assert len(pages) == 2
    assert "croissants grew by twelve percent" in loaded.text[pages[0]:pages[1]]
    assert "Sunday | 8:00 to 12:00" in loaded.text[pages[1]:].splitlines()
    assert loaded.title == "Quarterly review"


@pytest.mark.parametrize("name", ["bomb.docx", "bomb.pptx"])
def test_office_zip_bombs_are_refused_from_the_zip_directory(name):
    member = "word/document.xml" if name.endswith("docx") else "ppt/slides/slide1.xml"
    bomb = zip_bomb(member, size=48_000_000)
    assert len(bomb) < 200_000
    with pytest.raises(DocumentTooLargeError, match="decompressed"):
        load_bytes(bomb, name, limits=Limits(max_decompressed_bytes=32_000_000))
    with pytest.raises(DocumentTooLargeError, match="XML"):  # XML is bounded on its own (lxml trees are big)
        load_bytes(bomb, name)


@pytest.mark.parametrize("name", ["x.docx", "x.pptx"])
def test_broken_office_files_are_refused_as_broken(name):
    with pytest.raises(BrokenDocumentError):
        load_bytes(b"PK\x03\x04 this is no archive", name)


def test_size_type_binary_and_empty_are_told_apart():
    with pytest.raises(UnsupportedFormatError, match=r"\.csv"):
        format_for("table.csv")
    with pytest.raises(DocumentTooLargeError):
        load_bytes(b"x" * 2000, "big.txt", limits=Limits(max_bytes=1000))
    with pytest.raises(BinaryContentError):
        load_bytes(b"\x00\x01\x02", "blob.txt")
    with pytest.raises(EmptyDocumentError):
        load_bytes(b"   \n", "blank.md")
    with pytest.raises(DocumentTooLargeError, match="characters"):
        load_bytes(b"word " * 1000, "long.txt", limits=Limits(max_chars=100))


def test_a_directory_of_every_format_with_junk_and_symlinks(tmp_path):
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "a.txt").write_text("Plain text about apples.\n", encoding="utf-8")
    (corpus / "b.md").write_text("---\ntitle: Bananas\n---\nAll about bananas.\n", encoding="utf-8")
    (corpus / "menu.html").write_text(MENU_HTML, encoding="utf-8")
    (corpus / "sub" / "report.pdf").write_bytes(two_page_pdf())
    (corpus / "prices.docx").write_bytes(docx_with_table())
    (corpus / "deck.pptx").write_bytes(pptx_two_slides())
    (corpus / "junk.bin").write_bytes(os.urandom(64))
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 nothing")
    (corpus / "empty.txt").write_bytes(b"")
    outside = tmp_path / "secret.txt"
    outside.write_text("The server's secret text.\n", encoding="utf-8")
    (corpus / "leak.txt").symlink_to(outside)
    (corpus / "alias.txt").symlink_to(corpus / "a.txt")
    (corpus / ".hidden.txt").write_text("hidden\n", encoding="utf-8")

    result = load_paths([corpus])
    by_source = {d.source: d for d in result.documents}
    assert set(by_source) == {"corpus/a.txt", "corpus/alias.txt", "corpus/b.md", "corpus/menu.html",
                              "corpus/sub/report.pdf", "corpus/prices.docx", "corpus/deck.pptx"}
    assert by_source["corpus/b.md"].title == "Bananas"
    # Links inside the tree are followed and recorded by their own path; origin is absolute.
    assert by_source["corpus/alias.txt"].metadata["origin"] == str((corpus / "alias.txt").absolute())
    assert all(os.path.isabs(d.metadata["origin"]) for d in result.documents)
    assert not any("secret" in d.text for d in result.documents)
    skipped = {s.path: s for s in result.skipped}
    assert set(skipped) == {"corpus/junk.bin", "corpus/broken.pdf", "corpus/empty.txt", "corpus/leak.txt"}
    assert skipped["corpus/junk.bin"].kind == "unsupported type" and not skipped["corpus/junk.bin"].failed
    assert skipped["corpus/empty.txt"].kind == "empty" and not skipped["corpus/empty.txt"].failed
    assert skipped["corpus/leak.txt"].kind == "symlink" and "outside" in skipped["corpus/leak.txt"].reason
    assert skipped["corpus/broken.pdf"].kind == "broken" and skipped["corpus/broken.pdf"].failed
    assert [s.path for s in result.failed] == ["corpus/broken.pdf"]


def test_sources_are_relative_to_what_was_named(tmp_path, monkeypatch):
    docs = tmp_path / "work" / "docs"
    docs.mkdir(parents=True)
    (docs / "a.txt").write_text("Alpha.\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path / "work")
    assert [d.source for d in load_paths(["docs"]).documents] == ["docs/a.txt"]
    assert [d.source for d in load_paths(["docs/a.txt"]).documents] == ["docs/a.txt"]
    assert [d.source for d in load_paths([str(docs)]).documents] == ["docs/a.txt"]  # absolute: no machine path
    assert [d.source for d in load_paths([str(docs / "a.txt")]).documents] == ["docs/a.txt"]
    monkeypatch.chdir(docs)
    assert [d.source for d in load_paths(["."]).documents] == ["a.txt"]
    assert [d.source for d in load_paths(["../docs"]).documents] == ["docs/a.txt"]


def test_large_html_keeps_rows_and_drops_furniture_without_the_slow_extractor():
    rows = b"".join(b"<tr><td>Item %d</td><td>%d EUR</td></tr>" % (i, i) for i in range(12_000))
    page = b"<html><body><nav>NAVIGATION LINKS</nav><main><h1>Price list</h1><table>" + rows + \
        b"</table></main><footer>FOOTER IMPRINT</footer></body></html>"
    loaded = load_bytes(page, "prices.html")
    lines = loaded.text.splitlines()
    assert lines[0] == "Price list" and "Item 11999 | 11999 EUR" in lines and len(lines) == 12_001
    assert "NAVIGATION" not in loaded.text and "FOOTER" not in loaded.text


def test_empty_html_is_empty_not_broken():
    with pytest.raises(EmptyDocumentError):
        load_bytes(b"  \n", "blank.html")


def test_html_declared_charset_is_honoured():
    page = ('<html><head><meta charset="shift_jis"><title>東京の天気</title></head>'
            '<body><p>東京は今日晴れです。気温は二十度です。</p></body></html>')
    loaded = load_bytes(page.encode("shift_jis"), "tokyo.html")
    assert loaded.title == "東京の天気" and "東京は今日晴れです。" in loaded.text
    assert loaded.metadata["encoding"] == "shift_jis"

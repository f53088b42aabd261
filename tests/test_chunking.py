"""Sentence-aware chunking: exact offsets, boilerplate dropped, size and overlap respected."""
from __future__ import annotations

import pytest

from rag.chunking import ChunkingConfig, chunk_document, split_sentences
from rag.documents import load_paths, make_document

from support import SEEDS


@pytest.fixture(scope="module")
def seed_document():
    (doc,) = load_paths([SEEDS]).documents
    return doc


def _many_sentences(n: int = 40) -> str:
    return " ".join(f"Sentence number {i} says something about topic {i % 7}." for i in range(n)) + "\n"


def _check_offsets(doc, chunks):
    assert chunks
    for c in chunks:
        assert c.text == doc.text[c.start:c.end]
        assert c.document_id == doc.id
        assert c.sentences, "a chunk holds at least one sentence"
        assert c.sentences[0].start == c.start and c.sentences[-1].end == c.end
        previous_end = c.start
        for s in c.sentences:
            assert c.start <= s.start < s.end <= c.end
            assert s.start >= previous_end, "sentences are in order and do not overlap"
            previous_end = s.end
            sentence = doc.text[s.start:s.end]
            assert sentence == sentence.strip(), "sentence spans carry no surrounding whitespace"
    assert len({c.id for c in chunks}) == len(chunks)


@pytest.mark.parametrize("size,overlap", [(1000, 1), (300, 0), (150, 2)])
def test_seed_chunks_are_exact_slices(seed_document, size, overlap):
    _check_offsets(seed_document, chunk_document(seed_document, ChunkingConfig(size, overlap)))


def test_article_image_line_never_appears_in_a_chunk(seed_document):
    assert "\narticle image\n" in seed_document.text  # the seed has the furniture line
    for size in (100, 400, 1000, 5000):
        for c in chunk_document(seed_document, ChunkingConfig(size, 1)):
            assert "article image" not in c.text.lower()
            for s in c.sentences:
                assert seed_document.text[s.start:s.end].strip().lower() != "article image"


def test_boilerplate_lines_break_chunks_but_prose_mentioning_them_is_kept():
    text = ("The article image was taken in Kyiv by a staff photographer.\n"
            "Article Image\n"
            "Photo\n"
            "The second section starts here and continues.\n"
            "  ADVERTISEMENT  \n"
            "The third section is short.\n")
    doc = make_document(text, source="mem/boiler.txt")
    chunks = chunk_document(doc, ChunkingConfig(1000, 1))
    _check_offsets(doc, chunks)
    joined = [c.text for c in chunks]
    assert joined == ["The article image was taken in Kyiv by a staff photographer.",
                      "The second section starts here and continues.",
                      "The third section is short."]


@pytest.mark.parametrize("size", [100, 200, 500])
def test_chunk_size_is_respected(size):
    doc = make_document(_many_sentences(), source="mem/many.txt")
    chunks = chunk_document(doc, ChunkingConfig(size, 1))
    _check_offsets(doc, chunks)
    assert all(len(c.text) <= size for c in chunks)
    assert len(chunks) > 1
    # Chunks are filled: nearly all hold more than one sentence at these sizes.
    assert sum(len(c.sentences) > 1 for c in chunks) >= len(chunks) - 1


def test_an_over_long_sentence_is_split_at_whitespace():
    long_sentence = " ".join(f"word{i}" for i in range(120)) + "."  # about 830 characters, one sentence
    doc = make_document(f"Short opener.\n{long_sentence}\nShort closer.\n", source="mem/long.txt")
    chunks = chunk_document(doc, ChunkingConfig(200, 0))
    _check_offsets(doc, chunks)
    assert all(len(c.text) <= 200 for c in chunks)
    covered = "".join(doc.text[s.start:s.end] + " " for c in chunks for s in c.sentences)
    assert all(f"word{i} " in covered for i in range(119)) and "word119." in covered
    for c in chunks:
        for s in c.sentences:
            piece = doc.text[s.start:s.end]
            assert not piece.startswith(" ") and not piece.endswith(" ")
            assert "wor d" not in piece


def test_split_pieces_of_a_long_sentence_carry_no_surrounding_whitespace():
    """Like every other sentence span, the pieces of a split sentence are trimmed (double spaces too)."""
    long_sentence = "  ".join(f"word{i}" for i in range(120)) + "."
    doc = make_document(f"Opener.\r\n{long_sentence}\r\nCloser here.\r\n", source="mem/double.txt")
    chunks = chunk_document(doc, ChunkingConfig(200, 0))
    _check_offsets(doc, chunks)


def test_split_sentences_reports_sentences_with_exact_spans():
    text = "Dr. Smith arrived at 9 a.m. on Monday. He left early!\n\nWas it late? Nobody knew.\n"
    (section,) = split_sentences(text)
    sentences = [text[s.start:s.end] for s in section]
    assert sentences[-2:] == ["Was it late?", "Nobody knew."]
    assert "He left early!" in sentences
    assert len(sentences) == 4


@pytest.mark.parametrize("overlap", [1, 2])
def test_overlap_shares_sentences_between_consecutive_chunks(overlap):
    doc = make_document(_many_sentences(), source="mem/many.txt")
    chunks = chunk_document(doc, ChunkingConfig(300, overlap))
    assert len(chunks) > 2
    for a, b in zip(chunks, chunks[1:]):
        shared = set(a.sentences) & set(b.sentences)
        expected = min(overlap, len(a.sentences) - 1)
        assert len(shared) == expected
        assert list(a.sentences[len(a.sentences) - expected:]) == list(b.sentences[:expected])


def test_no_overlap_means_no_shared_sentences_and_full_coverage():
    doc = make_document(_many_sentences(), source="mem/many.txt")
    chunks = chunk_document(doc, ChunkingConfig(300, 0))
    spans = [s for c in chunks for s in c.sentences]
    assert len(spans) == len(set(spans))
    (section,) = split_sentences(doc.text, 300)
    assert spans == section


def test_chunking_config_validates():
    with pytest.raises(ValueError, match="99"):
        ChunkingConfig(99, 1)
    with pytest.raises(ValueError, match="-1"):
        ChunkingConfig(1000, -1)


@pytest.mark.parametrize("line", [
    "Hello world. This is a test! Is it? Yes.",
    "Привет мир. Это тест — ça va? 😀 Emoji here. Done.",
    "e\u0301 combining accents. ß… ok. 日本語の文です。次の文です。",
    "No end punctuation at all",
    "x",
])
def test_sentence_offsets_match_blingfires_own_mapping(line):
    import blingfire

    from rag.chunking import sentence_offsets

    _, expected = blingfire.text_to_sentences_and_offsets(line)
    assert sentence_offsets(line) == [tuple(x) for x in expected]
    assert sentence_offsets("") == []


def test_chunks_given_their_sections_equal_chunks_split_afresh(seed_document):
    config = ChunkingConfig()
    sections = split_sentences(seed_document.text, config.size)
    assert chunk_document(seed_document, config, sections) == chunk_document(seed_document, config)


# -- soft line breaks -----------------------------------------------------------------------
WRAPPED = (
    "Spanish Influenza\n"
    "By A. Writer\n"
    "\n"
    "An estimated one third of the world's population (or\n"
    "z500 million persons) were infected and had clinical-\n"
    "ly apparent illnesses. Total deaths were estimated at\n"
    "z50 million and were arguably as high as 100 mil-\n"
    "lion. All influenza A pandemics since that time, and\n"
    "Indeed almost all cases, descend from the 1918 virus.\n"
    "\n"
    "Findings\n"
    "- the first item wraps onto\n"
    "  a second line.\n"
    "- the second item.\n"
    "| year | deaths |\n"
    "| 1918 | 50 million |\n"
)


def _sentences(text: str) -> list[str]:
    return [text[s.start:s.end] for section in split_sentences(text) for s in section]


def test_hard_wrapped_sentences_are_joined_with_exact_offsets():
    got = _sentences(WRAPPED)
    assert ("An estimated one third of the world's population (or\nz500 million persons) were infected and "
            "had clinical-\nly apparent illnesses.") in got
    assert "Total deaths were estimated at\nz50 million and were arguably as high as 100 mil-\nlion." in got
    assert ("All influenza A pandemics since that time, and\nIndeed almost all cases, descend from the 1918 "
            "virus.") in got


def test_titles_bylines_lists_and_table_rows_still_break():
    got = _sentences(WRAPPED)
    for line in ("Spanish Influenza", "By A. Writer", "Findings", "- the second item.", "| year | deaths |",
                 "| 1918 | 50 million |"):
        assert line in got, line
    assert "- the first item wraps onto\n  a second line." in got, "a list item continues on an indented line"


def test_blank_lines_and_crlf_keep_paragraphs_apart():
    text = "First paragraph ends without a stop\r\n\r\nsecond paragraph starts in lower case and goes on\r\nwrapped here.\r\n"
    got = _sentences(text)
    assert got == ["First paragraph ends without a stop",
                   "second paragraph starts in lower case and goes on\r\nwrapped here."]

"""The persisted index: round trips, atomic saves, corruption and mismatch detection, incremental ingest."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest

from rag.documents import make_document
from rag.errors import IndexCorruptError, IndexMismatchError, IndexNotFoundError
from rag.manifest import CURRENT, load_index, save_index
from rag.snapshot import verify_segment

from support import SEEDS


class CountingEmbedder:
    """Delegates to the real embedder and records every text it is asked to encode."""

    def __init__(self, inner):
        self._inner = inner
        self.name = inner.name
        self.encoded: list[str] = []

    @property
    def dimension(self) -> int:
        return self._inner.dimension

    @property
    def precision(self) -> str:
        return self._inner.precision

    def encode(self, texts, *, show_progress: bool = False):
        self.encoded.extend(texts)
        return self._inner.encode(texts, show_progress=show_progress)

    def encode_query(self, text):
        return self._inner.encode_query(text)


EXTRA_TEXT = ("The Skellig lighthouse was automated in 1987.\n"
              "Its last keeper, Orla Brennan, now runs a small museum on Valentia Island.\n")


@pytest.fixture
def copied_seed_index(tmp_path, seed_data_dir) -> Path:
    """A private copy of the seed data dir, safe to damage."""
    target = tmp_path / "data"
    shutil.copytree(seed_data_dir, target)
    return target


def _snapshot(data_dir: Path) -> Path:
    """The directory of the index's one segment."""
    index_dir = data_dir / "index"
    (segment,) = json.loads((index_dir / (index_dir / CURRENT).read_text().strip()).read_text())["segments"]
    return index_dir / segment["name"]


def test_save_then_load_round_trips(seed_pipeline, tmp_path):
    index = seed_pipeline.index
    root = tmp_path / "copy"
    saved = save_index(index, root)
    snap = root / saved.segments[0].name
    assert (root / CURRENT).read_text().strip() == f"manifest-{saved.generation:08d}.json"
    loaded = load_index(root, seed_pipeline.index_config)
    assert len(loaded.documents) == len(index.documents) == 1
    assert len(loaded.chunks) == len(index.chunks) > 1
    assert len(loaded.sentences) == len(index.sentences) > len(index.chunks)
    assert loaded.documents[0].text == index.documents[0].text
    assert [(c.id, c.start, c.end, c.text, c.sentences) for c in loaded.chunks] == \
           [(c.id, c.start, c.end, c.text, c.sentences) for c in index.chunks]
    np.testing.assert_array_equal(loaded.segments[0].index.chunk_vectors(), index.segments[0].index.chunk_vectors())
    np.testing.assert_array_equal(loaded.sentence_matrix(slice(None)), index.sentence_matrix(slice(None)))
    np.testing.assert_array_equal(loaded.bm25.scores("Peskov Lavrov"), index.bm25.scores("Peskov Lavrov"))
    manifest = json.loads((snap / "manifest.json").read_text())
    assert manifest["counts"] == {"documents": 1, "chunks": len(index.chunks), "sentences": len(index.sentences)}


def test_a_loaded_index_saves_its_documents_byte_for_byte_and_reads_texts_on_demand(seed_pipeline, tmp_path):
    save_index(seed_pipeline.index, tmp_path / "a")
    first = tmp_path / "a" / load_index(tmp_path / "a").segments[0].name
    loaded = load_index(tmp_path / "a")
    (doc,) = loaded.live_documents()
    assert doc.text == seed_pipeline.index.live_documents()[0].text and doc.chars == len(doc.text)
    second = tmp_path / "b" / save_index(loaded, tmp_path / "b").segments[0].name
    assert (second / "documents.jsonl").read_bytes() == (first / "documents.jsonl").read_bytes()
    assert (second / "chunks.faiss").read_bytes() == (first / "chunks.faiss").read_bytes()


def test_chunk_table_gives_the_chunks_the_chunker_made(seed_pipeline, seed_doc):
    from rag.chunking import ChunkingConfig, chunk_document

    index = seed_pipeline.index
    expected = chunk_document(seed_doc, ChunkingConfig(index.config.chunk_size, index.config.chunk_overlap))
    assert list(index.chunks) == expected
    assert index.chunks[-1] == expected[-1] and index.chunks[1:3] == expected[1:3]
    with pytest.raises(IndexError):
        index.chunks[len(expected)]


def test_sentence_vectors_are_stored_as_float16_within_1e3_of_the_model(seed_pipeline, embedder):
    index = seed_pipeline.index
    assert all(s.index.sentence_vectors.dtype == np.float16 for s in index.segments)
    rows = [0, len(index.sentences) // 2, len(index.sentences) - 1]
    texts = [index.documents[d].text[a:b] for d, a, b in index.sentences[rows].tolist()]
    np.testing.assert_allclose(index.sentence_matrix(rows), embedder.encode(texts), atol=1e-3)


def test_an_older_index_format_is_refused_then_rebuilt_from_its_documents(copied_seed_index, tmp_pipeline):
    # Format 3 was one snapshot directory named by CURRENT; its documents file is what a rebuild reads.
    index_dir = copied_seed_index / "index"
    old = index_dir / "snap-1700000000000000000-abcdef"
    _snapshot(copied_seed_index).rename(old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["format_version"] = 3
    (old / "manifest.json").write_text(json.dumps(manifest))
    (index_dir / CURRENT).write_text(old.name)
    with pytest.raises(IndexMismatchError, match="rag ingest --rebuild"):
        tmp_pipeline(copied_seed_index).load()
    pipeline = tmp_pipeline(copied_seed_index)
    report = pipeline.ingest_documents([], rebuild=True)
    assert report.rebuilt and "format 3" in report.rebuilt and report.documents == 1
    assert "Peskov" in pipeline.search("What did Peskov say?", 1)[0].text


def test_missing_index_is_reported(tmp_path):
    with pytest.raises(IndexNotFoundError, match="rag ingest"):
        load_index(tmp_path / "nothing-here")


def test_crash_mid_save_leaves_previous_index_loadable(copied_seed_index, tmp_pipeline, monkeypatch):
    pipeline = tmp_pipeline(copied_seed_index)
    pipeline.load(build_from_seeds=False)
    before = _snapshot(copied_seed_index)
    n_chunks = len(pipeline.index.chunks)

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(faiss, "write_index", crash)
    with pytest.raises(OSError, match="simulated"):
        pipeline.ingest_documents([make_document(EXTRA_TEXT, source="extra/lighthouse.txt")])
    monkeypatch.undo()

    assert _snapshot(copied_seed_index) == before
    leftovers = [p.name for p in (copied_seed_index / "index").iterdir() if p.name.startswith(".tmp")]
    assert leftovers == []
    reloaded = load_index(copied_seed_index / "index", pipeline.index_config)
    assert len(reloaded.documents) == 1 and len(reloaded.chunks) == n_chunks
    # The running pipeline still serves the old snapshot.
    assert len(pipeline.index.live_documents()) == 1
    assert pipeline.search("What did Peskov say?", 3)


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
@pytest.mark.parametrize("name", ["chunks.faiss", "documents.jsonl", "sentence_vectors.npy"])
def test_a_damaged_segment_file_is_found_and_the_segment_left_out(copied_seed_index, seed_pipeline, name, damage):
    segment = _snapshot(copied_seed_index)
    path = segment / name
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])
    else:
        path.unlink()
    view = load_index(copied_seed_index / "index", seed_pipeline.index_config)
    if damage == "flip":  # the same size: a start checks sizes only; the full checksums find it
        message = "; ".join(verify_segment(segment))
    else:
        ((damaged, message, _),) = view.damaged
        assert damaged == segment.name and view.segments == ()
    assert name in message and ("missing" if damage == "delete" else "corrupt") in message


def test_corrupt_manifests_and_a_dangling_pointer_are_refused(copied_seed_index, seed_pipeline):
    index_dir = copied_seed_index / "index"
    manifest = index_dir / (index_dir / CURRENT).read_text().strip()
    body = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**body, "journal_seq": 99}))  # its checksum no longer matches
    with pytest.raises(IndexCorruptError, match="checksum"):
        load_index(index_dir)
    manifest.write_text("{not json")
    with pytest.raises(IndexCorruptError, match=manifest.name):
        load_index(index_dir)
    (index_dir / CURRENT).write_text("manifest-99999999.json")
    with pytest.raises(IndexCorruptError, match="manifest-99999999.json"):
        load_index(index_dir)


def test_a_damaged_segment_is_reported_not_rebuilt_silently(copied_seed_index, tmp_pipeline):
    path = _snapshot(copied_seed_index) / "chunks.npy"
    path.write_bytes(path.read_bytes()[:100])
    pipeline = tmp_pipeline(copied_seed_index)
    pipeline.load()  # the seed corpus is not ingested in its place
    assert [name for name, _, _ in pipeline.index.damaged] == [path.parent.name]
    assert pipeline.index.document_count == 0
    assert pipeline.store.maintenance.repair() == [path.parent.name]  # from its intact documents file
    assert pipeline.index.damaged == () and "Peskov" in pipeline.search("What did Peskov say?", 1)[0].text


def test_other_chunk_size_is_a_mismatch(seed_data_dir, seed_pipeline, tmp_pipeline):
    expected = dataclasses.replace(seed_pipeline.index_config, chunk_size=500)
    with pytest.raises(IndexMismatchError) as info:
        load_index(seed_data_dir / "index", expected)
    assert "chunk_size" in str(info.value) and "500" in str(info.value) and "1000" in str(info.value)
    with pytest.raises(IndexMismatchError, match="chunk_size"):
        tmp_pipeline(seed_data_dir, chunk_size=500).load()


def test_changed_settings_rebuild_on_ingest(copied_seed_index, tmp_pipeline, embedder):
    counting = CountingEmbedder(embedder)
    pipeline = tmp_pipeline(copied_seed_index, chunk_size=500, with_embedder=counting)
    report = pipeline.ingest([SEEDS])
    assert report.rebuilt and "chunk_size" in report.rebuilt
    assert counting.encoded, "a settings change re-embeds"
    reloaded = load_index(copied_seed_index / "index", pipeline.index_config)
    assert reloaded.config.chunk_size == 500
    assert all(len(c.text) <= 500 for c in reloaded.chunks)


def test_reingesting_unchanged_documents_does_not_embed_them(tmp_path, tmp_pipeline, embedder):
    counting = CountingEmbedder(embedder)
    data_dir = tmp_path / "data"
    first = tmp_pipeline(data_dir, with_embedder=counting)
    report = first.ingest([SEEDS])
    assert (report.added, report.updated, report.unchanged) == (1, 0, 0)
    assert counting.encoded

    # Same pipeline, same files: nothing embedded.
    counting.encoded.clear()
    report = first.ingest([SEEDS])
    assert (report.added, report.updated, report.unchanged) == (0, 0, 1)
    assert counting.encoded == []
    assert report.documents == 1 and report.chunks == len(first.index.chunks)

    # A fresh process (pipeline) over the stored index: still nothing embedded for the seed.
    second = tmp_pipeline(data_dir, with_embedder=counting)
    extra = tmp_path / "extra.txt"
    extra.write_text(EXTRA_TEXT, encoding="utf-8")
    report = second.ingest([SEEDS, extra])
    assert (report.added, report.updated, report.unchanged) == (1, 0, 1)
    assert counting.encoded, "the new document is embedded"
    assert all(t in EXTRA_TEXT for t in counting.encoded), "only the new document's texts are embedded"
    assert report.documents == 2

    # Search still works over reused and new vectors alike.
    top = second.search("Who was the last keeper of the Skellig lighthouse?", 1)[0]
    assert "Orla Brennan" in top.text
    top = second.search("What did Peskov say?", 3)
    assert any("Peskov" in p.text for p in top)

    # Changing a document re-embeds only that document.
    counting.encoded.clear()
    extra.write_text(EXTRA_TEXT + "The museum opens in May.\n", encoding="utf-8")
    report = second.ingest([SEEDS, extra])
    assert (report.added, report.updated, report.unchanged) == (0, 1, 1)
    assert counting.encoded and all(t in extra.read_text(encoding="utf-8") for t in counting.encoded)

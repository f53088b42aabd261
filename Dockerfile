# CPU image that answers questions about the seed article on port 8000.
#
#   docker build -t rag .
#   docker run -p 8000:8000 -v rag-data:/data -e RAG_API_KEYS=change-me rag
#
# The server listens on 0.0.0.0 inside the container, so document writes (POST/PUT/DELETE /documents) and
# the feedback export need RAG_API_KEYS: without keys they are refused with 403; questions work either way.
# Everything the service writes (index, journal, feedback, the exported ONNX model) lives in the volume
# /data (RAG_DATA_DIR): keep the volume and a new container serves the same documents. Requests are
# answered for IP addresses and localhost; serving a host name (behind a proxy, say) needs
# RAG_ALLOWED_HOSTS=that.name (other names get 421), and a proxy's X-Forwarded-For is believed only from
# RAG_TRUSTED_PROXIES.
FROM python:3.11-slim

ENV HF_HUB_OFFLINE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    RAG_HOST=0.0.0.0 \
    RAG_PORT=8000 \
    RAG_DATA_DIR=/data

WORKDIR /app

# Dependencies first, in their own layer: a code change does not reinstall torch. The package's
# directories are empty stand-ins here (setuptools needs them); the CPU build of torch comes from the
# PyTorch index (PyPI's default Linux wheel is the multi-GB CUDA build), as in the README's quick start.
COPY pyproject.toml ./
RUN mkdir -p rag server eval ragcli cluster && touch README.md rag/__init__.py server/__init__.py eval/__init__.py \
    ragcli/__init__.py cluster/__init__.py \
 && pip install --no-deps --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && pip install . \
 && pip uninstall -y rag-service \
 && rm -rf rag server eval ragcli cluster README.md

# Then the code.
COPY README.md ./
COPY rag rag
COPY server server
COPY eval eval
COPY ragcli ragcli
# The Ray layer's code (its dependency is the optional `cluster` extra, not installed in this image;
# a cluster image adds `pip install '.[cluster]'`, see docs/cluster.md).
COPY cluster cluster
COPY seeds seeds
RUN pip install --no-deps . \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin rag \
 && mkdir -p /data && chown rag:rag /data

USER rag
# Index the seeds and export the ONNX model at build time, so the first start is quick. Docker copies
# this into a new named volume the first time one is mounted at /data; an empty bind mount starts
# without it and indexes seeds/ on first start instead (it must be writable by uid 10001).
RUN rag ingest seeds
VOLUME ["/data"]

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)" || exit 1
CMD ["rag", "serve"]

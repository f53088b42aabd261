# CPU image that answers questions about the seed article on port 8000.
#   docker build -t rag . && docker run -p 8000:8000 rag
FROM python:3.11-slim

ENV HF_HUB_OFFLINE=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    RAG_HOST=0.0.0.0 \
    RAG_PORT=8000 \
    RAG_DATA_DIR=/app/data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY rag rag
COPY server server
COPY eval eval
COPY seeds seeds

# The CPU build of torch first (PyPI's default Linux wheel is the multi-GB CUDA build), then the service.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && pip install . \
 && rag ingest seeds

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)" || exit 1
CMD ["rag", "serve"]

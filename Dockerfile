# Worker image (also runs the `models` export job in docker-compose).
FROM python:3.11-slim
WORKDIR /workspace
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 METRICS_HOST=0.0.0.0
# Pass a CPU-only wheel index with --build-arg PIP_EXTRA_INDEX_URL=... to keep the image small.
ARG PIP_EXTRA_INDEX_URL=""
RUN pip install torch==2.13.0
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY models ./models
COPY load_tests ./load_tests
RUN pip install . && pip install --no-deps aisfx==0.1.2 recbole==1.2.1
COPY triton_repo ./triton_repo
EXPOSE 9464
CMD ["python", "-m", "worker", "run"]

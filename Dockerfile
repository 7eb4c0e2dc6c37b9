# krakenflow: one image for the ingest and the workers (docker-compose.yml, Procfile).
# the native book core (native/, Rust via PyO3) as a wheel; the image runs without a toolchain
FROM python:3.11-slim AS native
RUN apt-get update && apt-get install -y --no-install-recommends curl build-essential \
    && curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH=/root/.cargo/bin:$PATH
COPY native /native
RUN pip wheel --no-deps -w /wheels /native

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY --from=native /wheels /wheels
RUN pip install /wheels/*.whl

COPY pyproject.toml README.md ./
COPY app ./app
COPY agents ./agents
COPY broker ./broker
COPY cli ./cli
COPY ingest ./ingest
COPY krakenflow ./krakenflow
COPY models ./models
COPY tables ./tables
COPY sim ./sim
RUN pip install .

# worker web views and /metrics; the standalone ingest's /metrics
EXPOSE 6066 6065
ENV KRAKENFLOW_WEB_HOST=0.0.0.0 KRAKENFLOW_DATA_DIR=/data
VOLUME /data
CMD ["faust", "-A", "app", "worker", "-l", "info"]

# cdms API server: `cdms serve` against the PostgreSQL that DATABASE_URL names.
#   docker build -t cdms . && docker run -e DATABASE_URL=postgresql://user:pass@db:5432/cdms -p 8000:8000 cdms
# or, with PostgreSQL beside it: docker compose -f deploy/compose.yaml up
FROM python:3.12-slim

# the extras installed: `serve` only (no pandas, scikit-learn, matplotlib, Faker, pgserver);
# e.g. --build-arg CDMS_EXTRAS="serve train seed" to train models and seed demo data in it
ARG CDMS_EXTRAS="serve"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PROJECT_ENVIRONMENT=/opt/cdms \
    UV_LINK_MODE=copy \
    PATH=/opt/cdms/bin:$PATH \
    CDMS_HOST=0.0.0.0 \
    CDMS_PORT=8000 \
    CDMS_ENV=production \
    CDMS_DATA_DIR=/var/lib/cdms

RUN pip install --no-cache-dir "uv==0.13.9" \
    && useradd --create-home --uid 10001 cdms \
    && mkdir -p /var/lib/cdms && chown cdms:cdms /var/lib/cdms

WORKDIR /app
# the dependencies first, exactly as uv.lock pins them: a change to the sources reuses this layer
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-cache --no-install-project --no-editable \
    $(for e in $CDMS_EXTRAS; do printf -- '--extra %s ' "$e"; done)
COPY api ./api
COPY schema ./schema
COPY semantic ./semantic
COPY etl ./etl
COPY ml ./ml
COPY db ./db
RUN uv sync --locked --no-cache --no-editable \
    $(for e in $CDMS_EXTRAS; do printf -- '--extra %s ' "$e"; done)

USER cdms
# local state (the serve lock); the data itself is in the PostgreSQL of DATABASE_URL
VOLUME ["/var/lib/cdms"]
EXPOSE 8000
# liveness: /healthz (alive, reaches the database) stays 200 while the warehouse loads in the
# background, so a container busy with a first load is not marked unhealthy and restarted;
# route traffic on /readyz instead (503 until the API and the warehouse are ready:
# docs/operations.md). cdms listens within seconds of starting, whatever the data size.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, sys, urllib.request; port = os.environ.get('CDMS_PORT', '8000'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"

# CDMS_ENV=production: `cdms serve` refuses to start without DATABASE_URL (error[CONFIG]),
# never fills a database with invented customers (--no-seed-demo) and never trains
# (CDMS_TRAIN_ON_START defaults to 0: `cdms ml train` is a job, docs/operations.md): it
# migrates, listens, then loads the warehouse and scores with the registered models in the
# background.
CMD ["cdms", "serve", "--no-seed-demo"]

# cdms API server. Runs `cdms serve` against the PostgreSQL that DATABASE_URL names.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CDMS_HOST=0.0.0.0 \
    CDMS_PORT=8000 \
    CDMS_ENV=production \
    CDMS_DATA_DIR=/var/lib/cdms

RUN useradd --create-home --uid 10001 cdms \
    && mkdir -p /var/lib/cdms && chown cdms:cdms /var/lib/cdms

WORKDIR /app
COPY pyproject.toml README.md ./
COPY api ./api
COPY schema ./schema
COPY semantic ./semantic
COPY etl ./etl
COPY ml ./ml
COPY db ./db
RUN pip install --no-cache-dir .

USER cdms
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"

# DATABASE_URL must be provided at run time, e.g.
#   docker run -e DATABASE_URL=postgresql://user:pass@db:5432/cdms -p 8000:8000 cdms
# A production database is never filled with invented customers: start-up migrates, loads
# the warehouse and trains models from whatever data is there (for a demo: `cdms seed`).
CMD ["cdms", "serve", "--no-seed-demo"]

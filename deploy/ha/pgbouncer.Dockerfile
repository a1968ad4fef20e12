# PgBouncer from Debian's package (1.18 on bookworm), transaction pooling
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends pgbouncer \
    && rm -rf /var/lib/apt/lists/*
COPY pgbouncer.ini /etc/pgbouncer/pgbouncer.ini
COPY pgbouncer-entry.sh /usr/local/bin/pgbouncer-entry
RUN chmod 755 /usr/local/bin/pgbouncer-entry && chown -R postgres /etc/pgbouncer
USER postgres
EXPOSE 6432
CMD ["pgbouncer-entry"]

# PostgreSQL 16 with Patroni from Debian's packages (etcd v3 client included), and etcdctl
# for the etcd-init job (etcd-init.sh)
FROM postgres:16
RUN apt-get update \
    && apt-get install -y --no-install-recommends patroni python3-etcd3 python3-psycopg2 etcd-client curl \
    && rm -rf /var/lib/apt/lists/*
COPY patroni.yml /etc/patroni.yml
COPY post-init.sh /usr/local/bin/cdms-post-init
COPY etcd-init.sh /usr/local/bin/cdms-etcd-init
RUN chmod 755 /usr/local/bin/cdms-post-init /usr/local/bin/cdms-etcd-init \
    && mkdir -p /var/lib/postgresql/data && chown -R postgres:postgres /var/lib/postgresql
USER postgres
EXPOSE 5432 8008
HEALTHCHECK --interval=5s --timeout=3s CMD curl -fs http://localhost:8008/health || exit 1
CMD ["patroni", "/etc/patroni.yml"]

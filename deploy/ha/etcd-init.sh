#!/bin/sh
# etcd's authentication, before Patroni starts (the compose file's etcd-init job; the same
# script in tests/scale/topology.py): a root user (which `auth enable` needs) and a patroni
# user whose role reads and writes /service/ (Patroni's namespace) and nothing else. Without
# it anyone on the cluster network could write Patroni's leader key and choose the primary.
# Idempotent: a start that finds authentication on only checks that root's password opens
# it (a first run cut short before `auth enable` is completed by the next). Passwords from
# the environment (deploy/.env), never on a command line: etcdctl reads them on stdin.
set -eu
: "${ETCD_ENDPOINTS:?the etcd endpoints, e.g. http://etcd:2379}"
: "${CDMS_ETCD_ROOT_PASSWORD:?CDMS_ETCD_ROOT_PASSWORD is not set (deploy/.env.example)}"
: "${CDMS_ETCD_PATRONI_PASSWORD:?CDMS_ETCD_PATRONI_PASSWORD is not set (deploy/.env.example)}"
ctl() { etcdctl --endpoints="$ETCD_ENDPOINTS" --dial-timeout=5s "$@"; }
# a password on etcdctl's stdin (it warns that stdin is no terminal: shown only on failure)
with_password() {  # $1 password, then the command
    pw="$1"
    shift
    out="$(printf '%s\n%s\n' "$pw" "$pw" | ctl "$@" 2>&1)" \
        || { printf '%s\n' "$out" | grep -v 'stty:' >&2; return 1; }
}

tries=0
until ctl endpoint status >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ "$tries" -lt 60 ] || { echo "etcd-init: etcd at $ETCD_ENDPOINTS does not answer" >&2; exit 1; }
    sleep 1
done

if ctl user list >/dev/null 2>&1; then  # authentication is off: a first start
    add_user() {  # $1 user, $2 password
        ctl user get "$1" >/dev/null 2>&1 || with_password "$2" user add "$1"
    }
    add_user root "$CDMS_ETCD_ROOT_PASSWORD"
    ctl user grant-role root root >/dev/null
    ctl role get patroni >/dev/null 2>&1 || ctl role add patroni >/dev/null
    ctl role grant-permission patroni --prefix=true readwrite /service/ >/dev/null
    add_user patroni "$CDMS_ETCD_PATRONI_PASSWORD"
    ctl user grant-role patroni patroni >/dev/null
    ctl auth enable >/dev/null
    echo "etcd-init: authentication enabled (users root and patroni)"
else  # on already: the operator's root password must open it
    with_password "$CDMS_ETCD_ROOT_PASSWORD" --user root user get patroni \
        || { echo "etcd-init: etcd refuses root's password from deploy/.env" >&2; exit 1; }
    echo "etcd-init: authentication already enabled"
fi

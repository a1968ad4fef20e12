#!/bin/sh
# etcd's authentication, before Patroni starts (the compose file's etcd-init job; the same
# script in tests/scale/topology.py): a root user (which `auth enable` needs) and a patroni
# user whose role reads and writes /service/ (Patroni's namespace) and nothing else. Without
# it anyone on the cluster network could write Patroni's leader key and choose the primary.
#
# Every run ends with both users logging in with exactly the passwords of deploy/.env, or
# fails: a first run sets them and turns authentication on (one cut short is finished by
# the next, its passwords set again); a later run checks root's and, when patroni's was
# changed in deploy/.env, sets it as root. Passwords are letters and digits only (etcdctl
# reads them from a prompt that trims white space) and go to etcdctl on stdin, never on a
# command line.
set -eu
: "${ETCD_ENDPOINTS:?the etcd endpoints, e.g. http://etcd:2379}"
: "${CDMS_ETCD_ROOT_PASSWORD:?CDMS_ETCD_ROOT_PASSWORD is not set (deploy/.env.example)}"
: "${CDMS_ETCD_PATRONI_PASSWORD:?CDMS_ETCD_PATRONI_PASSWORD is not set (deploy/.env.example)}"
ROOT_PW="$CDMS_ETCD_ROOT_PASSWORD"
PATRONI_PW="$CDMS_ETCD_PATRONI_PASSWORD"
for pw in "$ROOT_PW" "$PATRONI_PW"; do
    case "$pw" in
        *[!A-Za-z0-9]*)
            echo "etcd-init: CDMS_ETCD_ROOT_PASSWORD and CDMS_ETCD_PATRONI_PASSWORD take letters and digits only (deploy/.env.example)" >&2
            exit 1 ;;
    esac
done

ctl() { etcdctl --endpoints="$ETCD_ENDPOINTS" --dial-timeout=5s "$@"; }
# etcdctl with lines on its stdin, answering its prompts in order (it warns that stdin is
# no terminal: its output is shown only on failure)
answering() {  # $1 the lines (each ended by a newline), then the command
    lines="$1"
    shift
    out="$(printf '%s' "$lines" | ctl "$@" 2>&1)" \
        || { printf '%s\n' "$out" | grep -v 'stty:' >&2; return 1; }
}
logs_in() {  # $1 user, $2 password: a read as that user succeeds
    case "$1" in
        root) answering "$2
" --user root user get patroni ;;
        *) answering "$2
" --user "$1" get /service/ --prefix --keys-only --limit=1 ;;
    esac
}

tries=0
until ctl endpoint status >/dev/null 2>&1; do
    tries=$((tries + 1))
    [ "$tries" -lt 60 ] || { echo "etcd-init: etcd at $ETCD_ENDPOINTS does not answer" >&2; exit 1; }
    sleep 1
done

if ctl user list >/dev/null 2>&1; then  # authentication is off: a first start
    set_user() {  # $1 user, $2 password: made, or (a run cut short) its password set again
        if ctl user get "$1" >/dev/null 2>&1; then
            answering "$2
$2
" user passwd "$1"
        else
            answering "$2
$2
" user add "$1"
        fi
    }
    set_user root "$ROOT_PW"
    ctl user grant-role root root >/dev/null
    ctl role get patroni >/dev/null 2>&1 || ctl role add patroni >/dev/null
    ctl role grant-permission patroni --prefix=true readwrite /service/ >/dev/null
    set_user patroni "$PATRONI_PW"
    ctl user grant-role patroni patroni >/dev/null
    ctl auth enable >/dev/null
    echo "etcd-init: authentication enabled (users root and patroni)"
else
    logs_in root "$ROOT_PW" \
        || { echo "etcd-init: etcd refuses root's password from deploy/.env" >&2; exit 1; }
    if ! logs_in patroni "$PATRONI_PW" 2>/dev/null; then  # changed in deploy/.env: set it
        answering "$PATRONI_PW
$PATRONI_PW
$ROOT_PW
" --user root user passwd patroni
        echo "etcd-init: patroni's password set from deploy/.env"
    fi
    echo "etcd-init: authentication already enabled"
fi
logs_in root "$ROOT_PW" && logs_in patroni "$PATRONI_PW" \
    || { echo "etcd-init: a user cannot log in with its password from deploy/.env" >&2; exit 1; }

#!/bin/sh
# the user list from the environment (the password never lands in the image)
set -eu
umask 077
printf '"cdms" "%s"\n' "${CDMS_DB_PASSWORD:?CDMS_DB_PASSWORD is not set (deploy/.env.example)}" \
    > /etc/pgbouncer/userlist.txt
exec pgbouncer /etc/pgbouncer/pgbouncer.ini

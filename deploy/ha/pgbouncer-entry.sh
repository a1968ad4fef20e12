#!/bin/sh
# the user list from the environment (the password never lands in the image)
set -eu
printf '"cdms" "%s"\n' "${CDMS_DB_PASSWORD:-cdms}" > /etc/pgbouncer/userlist.txt
exec pgbouncer /etc/pgbouncer/pgbouncer.ini

#!/bin/sh
# Patroni's post_bootstrap, once, on the first primary: the application's role and database
# (cdms serve migrates it on start). $1 is a connection string Patroni passes.
set -eu
psql "$1" -v ON_ERROR_STOP=1 -v pw="${CDMS_DB_PASSWORD:-cdms}" <<'SQL'
CREATE ROLE cdms LOGIN CREATEROLE PASSWORD :'pw';
CREATE DATABASE cdms OWNER cdms;
SQL

#!/bin/sh
# Patroni's post_bootstrap, once, on the first primary: the application's role and database
# (cdms serve migrates it on start). $1 is a connection string Patroni passes. The password
# comes from the operator (deploy/.env: CDMS_DB_PASSWORD), read by psql from the
# environment, never on a command line.
set -eu
: "${CDMS_DB_PASSWORD:?CDMS_DB_PASSWORD is not set (deploy/.env.example)}"
psql "$1" -v ON_ERROR_STOP=1 <<'SQL'
\getenv pw CDMS_DB_PASSWORD
CREATE ROLE cdms LOGIN CREATEROLE PASSWORD :'pw';
CREATE DATABASE cdms OWNER cdms;
SQL

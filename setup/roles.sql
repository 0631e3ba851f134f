-- influx-archive roles and database, run by install.sh as the postgres superuser through psql, with
-- the variables loader_role, loader_pw, grafana_role, grafana_pw and dbname set on psql's standard
-- input (never on a command line). Safe to run again: it converges to the same state.
\set ON_ERROR_STOP on

-- The loader: owns the archive database, is not a superuser and cannot create roles. It may create
-- databases: `restore --into` restores into a new one and `restore --verify` into a scratch one it drops.
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER CREATEDB NOCREATEROLE', :'loader_role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'loader_role') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER CREATEDB NOCREATEROLE PASSWORD %L',
              :'loader_role', :'loader_pw') \gexec

-- Grafana: reads, never writes.
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE', :'grafana_role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'grafana_role') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %L',
              :'grafana_role', :'grafana_pw') \gexec
SELECT format('ALTER ROLE %I SET default_transaction_read_only = on', :'grafana_role') \gexec

SELECT format('CREATE DATABASE %I OWNER %I', :'dbname', :'loader_role')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'dbname') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'dbname') \gexec
SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', :'dbname', :'loader_role') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', :'dbname', :'grafana_role') \gexec

\connect :"dbname"
-- Only the loader creates objects; Grafana may look and read, today and for every future table.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SELECT format('GRANT USAGE, CREATE ON SCHEMA public TO %I', :'loader_role') \gexec
SELECT format('GRANT USAGE ON SCHEMA public TO %I', :'grafana_role') \gexec
SELECT format('GRANT SELECT ON ALL TABLES IN SCHEMA public TO %I', :'grafana_role') \gexec
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public GRANT SELECT ON TABLES TO %I',
              :'loader_role', :'grafana_role') \gexec

"""Reading the archive back from PostgreSQL, independently of the loader's own SQL; making its database."""

import os
import subprocess

import psycopg2
from psycopg2 import sql

LOADER, GRAFANA = "ia_loader_t", "ia_grafana_t"  # the roles of the archive_url fixture (setup/roles.sql)


def archive_rows(pg_url, table="pox_five_second_mean", schema="public"):
    """{(epoch window start, *tags): {field: value}} read back from PostgreSQL."""
    conn = psycopg2.connect(pg_url)
    try:
        cur = conn.cursor()
        name = sql.Identifier(schema, table)
        qualified = name.as_string(conn)
        cur.execute("SELECT to_regclass(%s)", (qualified,))
        if cur.fetchone()[0] is None:
            return {}
        cur.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                    "AND NOT attisdropped ORDER BY attnum", (qualified,))
        cols = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                    "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary", (qualified,))
        key_names = {r[0] for r in cur.fetchall()}
        key = [c for c in cols if c in key_names]
        fields = [c for c in cols if c not in key]
        selected = [sql.SQL("extract(epoch FROM time)::bigint")] + [sql.Identifier(c) for c in key[1:] + fields]
        cur.execute(sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(selected), name))
        out = {}
        for row in cur.fetchall():
            k = (row[0], *row[1:len(key)])
            out[k] = {f: v for f, v in zip(fields, row[len(key):]) if v is not None}
        return out
    finally:
        conn.close()


def query(pg_url, statement, params=()):
    """Every row a statement returns, on a connection of its own."""
    conn = psycopg2.connect(pg_url)
    try:
        cur = conn.cursor()
        cur.execute(statement, params)
        return cur.fetchall()
    finally:
        conn.close()


def _one_row(pg_url, statement, params=()):
    rows = query(pg_url, statement, params)
    return rows[0] if rows else None


def count_rows(pg_url, table="pox_five_second_mean"):
    """(rows, distinct times) of the archive table."""
    return _one_row(pg_url, f'SELECT count(*), count(DISTINCT time) FROM "{table}"')


def first_loaded(pg_url):
    """Where the first run's range began (epoch seconds): a run floors its own clock, which may have
    crossed a window boundary since the test computed its times."""
    return _one_row(pg_url, "SELECT extract(epoch FROM min(range_start))::bigint FROM influx_archive_runs")[0]


def watermark(pg_url, table="public.pox_five_second_mean"):
    row = _one_row(pg_url, "SELECT extract(epoch FROM watermark)::bigint FROM influx_archive_state "
                           "WHERE target = %s", (table,))
    return row[0] if row else None


def superuser(pg_server, statement):
    conn = psycopg2.connect(pg_server.url())
    conn.autocommit = True
    try:
        cur = conn.cursor()
        cur.execute(statement)
        return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def everything(url):
    """Every row of every table, in a stable order: what 'identical' means for a restore."""
    conn = psycopg2.connect(url)
    try:
        cur = conn.cursor()
        cur.execute("SELECT schemaname, tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 2")
        tables = [t for _, t in cur.fetchall()]
        out = {}
        for table in tables:
            cur.execute(f'SELECT * FROM "{table}" ORDER BY 1, 2')
            out[table] = cur.fetchall()
        return out
    finally:
        conn.close()


def create_archive_database(pg_server, name):
    """The database and roles as install.sh makes them (setup/roles.sql); a URL for the loader role."""
    script = (f"\\set loader_role {LOADER}\n\\set grafana_role {GRAFANA}\n\\set dbname {name}\n"
              f"\\set loader_pw secret-pw-1\n\\set grafana_pw secret-pw-2\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "setup/roles.sql"), encoding="utf-8") as handle:
        script += handle.read()
    subprocess.run([os.path.join(pg_server.bindir, "psql"), "-X", "-q", "-h", "127.0.0.1", "-p", str(pg_server.port),
                    "-U", "postgres", "-d", "postgres"], input=script, text=True, check=True, capture_output=True)
    return pg_server.url(name, user=LOADER, password="secret-pw-1")


def grant_reader(pg_url, role="grafana_test"):
    """A role that may only SELECT the archive's tables, like Grafana's (made once per cluster)."""
    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    try:
        cur = conn.cursor()
        cur.execute(f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN "
                    f"CREATE ROLE {role} LOGIN; END IF; END $$")
        cur.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    finally:
        conn.close()
    return pg_url.replace("postgresql://postgres@", f"postgresql://{role}@")

"""Fixtures: real PostgreSQL and influxd servers and a loop-mounted drive (one each per test session),
a Flux stand-in and a fresh database per test, an archive database made as install.sh makes it, and a
backup directory on the drive. Helpers live in tests/support/."""

import os
import shutil
import uuid

import pytest

from tests.support.archive import create_archive_database, superuser
from tests.support.flux_standin import StandIn
from tests.support.harness import ORG, TOKEN
from tests.support.influxdb3_standin import InfluxDB3StandIn
from tests.support.servers import InfluxdServer, LoopDrive, PostgresServer, server_or_skip


@pytest.fixture(scope="session")
def pg_server():
    server = server_or_skip(PostgresServer)
    yield server
    server.close()


@pytest.fixture
def pg_url(pg_server):
    """A fresh database per test on the session's cluster."""
    return pg_server.new_database()


@pytest.fixture(scope="session")
def influxd():
    server = server_or_skip(InfluxdServer)
    yield server
    server.close()


@pytest.fixture
def influx_db(influxd):
    name = "db_" + uuid.uuid4().hex[:10]
    influxd.query(f'CREATE DATABASE "{name}"')
    return name


@pytest.fixture(scope="session")
def usb_drive():
    """A mounted ext4 drive (a loop device) for BACKUP_DIR: not the root filesystem, not memory."""
    drive = server_or_skip(LoopDrive)
    yield drive.path
    drive.close()


@pytest.fixture
def standin():
    server = StandIn(token=TOKEN, org=ORG)
    yield server
    server.close()


@pytest.fixture
def archive_url(pg_server):
    """A database made the way install.sh makes it (setup/roles.sql), as a URL for the loader role."""
    name = "ia_" + uuid.uuid4().hex[:10]
    yield create_archive_database(pg_server, name)
    for db in (name, name + "_copy", name + "_verify"):
        superuser(pg_server, f'DROP DATABASE IF EXISTS "{db}"')


@pytest.fixture
def backup_dir(usb_drive):
    path = os.path.join(usb_drive, "ia-backups-" + uuid.uuid4().hex[:8])
    os.mkdir(path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def influxdb3(influxd):
    """InfluxDB 3's v1 /query API as the stand-in answers it (one statement per request, Core <= 3.6)."""
    server = InfluxDB3StandIn(influxd)
    yield server
    server.close()

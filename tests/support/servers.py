"""Throwaway real servers on loopback in temp dirs: PostgreSQL (Debian's postgresql) and InfluxDB 1.x
(Debian's influxdb). Never touches a system cluster or service."""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
import uuid

import psycopg2


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bindir():
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(candidate, "initdb")):
            return candidate
    found = shutil.which("initdb")
    return os.path.dirname(found) if found else None


class PostgresServer:
    """initdb in a temp dir; start/stop/restart for outage tests. As root, runs as user postgres."""

    def __init__(self):
        self.bindir = _pg_bindir()
        if not self.bindir:
            raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql")
        self.dir = tempfile.mkdtemp(prefix="ia-pg-")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:
            self.user = "postgres"
            pw = pwd.getpwnam(self.user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\ninclude = 'port.conf'\n"
                       f"unix_socket_directories = '{self.dir}'\nfsync = off\n"
                       "synchronous_commit = off\nfull_page_writes = off\n")
        for attempt in range(5):  # another test worker may take the free port between free_port() and start
            with open(os.path.join(self.data, "port.conf"), "w") as conf:
                conf.write(f"port = {self.port}\n")
            try:
                self.start()
                break
            except subprocess.CalledProcessError:
                if attempt == 4 or not self._port_was_taken():
                    raise
                self.port = free_port()

    def _port_was_taken(self):
        try:
            with open(os.path.join(self.dir, "log"), encoding="utf-8", errors="replace") as log:
                return "could not bind" in log.read()
        except OSError:
            return False

    def _run(self, tool, *args):
        cmd = [os.path.join(self.bindir, tool), *args]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self):
        self._run("pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "log"), "-w", "-t", "30", "start")

    def stop(self, mode="fast"):
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def new_database(self):
        """The URL of a fresh, empty database on this cluster (the superuser's)."""
        name = "t_" + uuid.uuid4().hex[:12]
        conn = psycopg2.connect(self.url())
        conn.autocommit = True
        try:
            conn.cursor().execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)

    def url(self, dbname="postgres", user="postgres", password=None):
        auth = user + (":" + urllib.parse.quote(password, safe="") if password else "")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"

    def close(self):
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class InfluxdServer:
    """A real influxd 1.x on loopback, data in a temp dir."""

    def __init__(self, user=None):
        self.binary = shutil.which("influxd")
        if not self.binary:
            raise RuntimeError("influxd not found: apt-get install influxdb")
        self.user = user  # run as this user (root only): as a person's own InfluxDB beside the demo's
        self.dir = tempfile.mkdtemp(prefix="ia-influxd-")
        if user:
            shutil.chown(self.dir, user, user)
            os.chmod(self.dir, 0o755)
        self.log = open(os.path.join(self.dir, "influxd.log"), "wb")
        for attempt in range(5):  # another test worker may take a free port between free_port() and start
            if self._start():
                return
            with open(self.log.name, "rb") as log:
                lost_port = b"address already in use" in log.read()
            if attempt == 4 or not lost_port:
                raise RuntimeError("influxd did not start; see " + self.log.name)

    def _start(self):
        """Start on fresh free ports; whether this influxd answers (not another one on a port it lost)."""
        self.port = free_port()
        rpc = free_port()
        conf = os.path.join(self.dir, "influxdb.conf")
        with open(conf, "w") as f:
            f.write(f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{self.dir}/meta"
[data]
  dir = "{self.dir}/data"
  wal-dir = "{self.dir}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
""")
        self.proc = subprocess.Popen([self.binary, "-config", conf], stdout=self.log, stderr=subprocess.STDOUT,
                                     user=self.user, group=self.user)
        bound = b'msg="Listening on HTTP" log_id=', f"addr=127.0.0.1:{self.port} ".encode()
        deadline = time.time() + 30
        while self.proc.poll() is None and time.time() < deadline:
            with open(self.log.name, "rb") as log:  # this influxd's own word that it holds the port
                ours = any(all(part in line for part in bound) for line in log)
            try:
                if ours:
                    urllib.request.urlopen(f"{self.url}/ping", timeout=1)
                    return True
            except OSError:
                pass
            time.sleep(0.1)  # polling the starting server (its log, then /ping), as before
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        return False

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def query(self, q, db=None):
        data = urllib.parse.urlencode({"q": q, **({"db": db} if db else {})}).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=data, timeout=30) as r:
            return r.read()

    def write(self, db, lines, precision="s", batch=5000):
        """Write line-protocol lines in batches."""
        for i in range(0, len(lines), batch):
            body = "\n".join(lines[i:i + batch]).encode()
            req = urllib.request.Request(f"{self.url}/write?db={urllib.parse.quote(db)}&precision={precision}",
                                         data=body, method="POST")
            with urllib.request.urlopen(req, timeout=60) as r:
                assert r.status == 204, r.read()

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class LoopDrive:
    """A small ext4 filesystem in an image file, loop-mounted in a temp dir: what a USB drive is to
    BACKUP_DIR (another filesystem than /, kept across reboots, unlike tmpfs). Needs root."""

    def __init__(self, size_kb=256 * 1024):
        if os.geteuid() != 0:
            raise RuntimeError("mounting a loop device needs root")
        self.dir = tempfile.mkdtemp(prefix="ia-usb-")
        os.chmod(self.dir, 0o755)  # install.sh's service user reaches the mount point through it
        self.image = os.path.join(self.dir, "drive.img")
        self.path = os.path.join(self.dir, "mnt")
        os.mkdir(self.path)
        with open(self.image, "wb") as handle:
            handle.truncate(size_kb << 10)
        try:
            subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", self.image], check=True, capture_output=True)
            subprocess.run(["mount", "-o", "loop", self.image, self.path], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise RuntimeError(f"cannot make a loop-mounted ext4 drive: {getattr(exc, 'stderr', b'') or exc}") from None
        os.chmod(self.path, 0o1777)  # the tests' roles and users write here, as a drive mounted for them

    def close(self):
        subprocess.run(["umount", "-l", self.path], check=False, capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def server_or_skip(make, name=None):
    """make() a server; where it cannot start here, skip the test -- but in CI, which installs every
    server, fail."""
    try:
        return make()
    except RuntimeError as exc:
        if os.environ.get("CI"):
            raise  # CI installs every server: a missing one is a failure, not a skip
        import pytest
        pytest.skip(f"{name or make.__name__} unavailable here: {exc}")

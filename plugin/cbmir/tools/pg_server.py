"""A private PostgreSQL server from Debian's binaries, for `make cluster`, the tests and benchmarks.

Not imported by the plugin: it lives in the package so that scripts/cluster.py, bench/ and
tests/support/postgres.py share one implementation without path tricks.

Usage:

    server = PostgresServer(root=tmp_dir)      # data folder root/data, socket dir root/socket
    server.start()                              # initdb on first start, then postgres; waits
    server.settings()                           # {"Host", "Port", "Database", "Username", "Password"}
    server.create_database("test_1")            # fresh, empty database (settings(database=...))
    server.psql("SELECT 1", database="test_1")  # stdout of psql -At
    server.kill(); server.start()               # kill -9 then restart on the same data
    server.stop()                               # fast shutdown (SIGINT), waits

Why not the system cluster: it would listen on 5432 and be shared by every test run. This
one listens on a free port of 127.0.0.1 (and a unix socket inside `root`), with a password
user of our own. PostgreSQL refuses to run as root, so when we are root the server runs as
the unprivileged `postgres` system user (the owner of `root`, which must be reachable by it:
the missing search bit (`o+x`, no listing) is added on the folders above when needed; keep
`root` out of folders that something resets to 0700 while the server runs, e.g. pytest's
/tmp/pytest-of-<user>, which every pytest session re-chmods).
Only the standard library is used (psql for admin statements), so the helper works before
any Python driver is installed.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

BIN_DIRS = [Path("/usr/lib/postgresql") / v / "bin" for v in ("17", "16", "15")]


def find_bindir() -> Path | None:
    """Debian's PostgreSQL binaries (initdb, postgres, psql), newest first; None when absent."""
    override = os.environ.get("CBMIR_PG_BINDIR")
    candidates = [Path(override)] if override else BIN_DIRS
    return next((d for d in candidates if (d / "initdb").exists() and (d / "postgres").exists()), None)


def missing_reason() -> str | None:
    """Why a private PostgreSQL cannot start here (for skip messages), or None."""
    if find_bindir() is None:
        return ("PostgreSQL binaries not found (/usr/lib/postgresql/<v>/bin/initdb): "
                "run scripts/install-system.sh test")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and no 'postgres' system user to run PostgreSQL as"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    def __init__(self, root: str | Path, port: int | None = None, user: str = "cbmir",
                 password: str = "cbmir-pg-password", database: str = "cbmir",
                 durable: bool = False, bindir: str | Path | None = None):
        """`durable=False` (tests, benchmarks) turns fsync off: faster, and a crash of the machine
        (not of a server process) may lose the last commits. `make cluster` keeps it on."""
        self.root = Path(root).resolve()
        self.data = self.root / "data"
        self.port = port or free_port()
        self.user, self.password, self.database = user, password, database
        self.durable = durable
        self.bindir = Path(bindir) if bindir else find_bindir()
        if self.bindir is None:
            raise RuntimeError(missing_reason())
        self.log_path = self.root / "postgres.log"
        self.process: subprocess.Popen | None = None
        self._run_as = self._unprivileged_user()
        self.socket_dir = self._socket_dir()

    # -- settings ------------------------------------------------------------------------------
    def settings(self, database: str | None = None) -> dict:
        """Connection settings in the shape of the `PostgreSQL` configuration sections."""
        return {"Host": "127.0.0.1", "Port": self.port, "Database": database or self.database,
                "Username": self.user, "Password": self.password}

    def uri(self, database: str | None = None) -> str:
        return (f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/"
                f"{database or self.database}")

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> "PostgresServer":
        self.root.mkdir(parents=True, exist_ok=True)
        self._make_reachable()
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        options = ["-D", str(self.data), "-p", str(self.port), "-h", "127.0.0.1",
                   "-k", str(self.socket_dir), "-c", "max_connections=200"]
        if not self.durable:
            # fsync off only: a killed server process loses nothing (the OS has the WAL), a
            # machine crash may. synchronous_commit stays on for the kill -9 tests.
            options += ["-c", "fsync=off", "-c", "full_page_writes=off"]
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([str(self.bindir / "postgres"), *options], stdout=log,
                                        stderr=log, start_new_session=True, **self._as_user())
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}:\n{self.log_tail()}")
            if self._ready():
                if self.database != "postgres" and not self.database_exists(self.database):
                    self.create_database(self.database)
                return self
            time.sleep(0.2)
        self.kill()
        raise TimeoutError(f"PostgreSQL not ready in {timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30) -> int:
        """Fast shutdown (SIGINT: clients disconnected, clean checkpoint); returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"PostgreSQL did not stop in {timeout} s:\n{self.log_tail()}") from None

    def kill(self) -> None:
        """kill -9 of the postmaster and its backends (its process group)."""
        if self.process and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(10)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # -- admin ---------------------------------------------------------------------------------
    def psql(self, sql: str, database: str | None = None, check: bool = True) -> str:
        """Run `sql` with psql (-At: bare values, | between columns); returns stdout."""
        env = dict(os.environ, PGPASSWORD=self.password)
        result = subprocess.run([str(self.bindir / "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1",
                                 "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
                                 "-d", database or self.database, "-c", sql],
                                capture_output=True, text=True, env=env, timeout=60)
        if check and result.returncode != 0:
            raise RuntimeError(f"psql failed ({result.returncode}): {result.stderr.strip()}\n{sql}")
        return result.stdout

    def database_exists(self, name: str) -> bool:
        return self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'",
                         database="postgres").strip() == "1"

    def create_database(self, name: str) -> dict:
        """A fresh, empty database (dropped first if it exists); returns its settings()."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name must be alphanumeric/underscore: {name!r}")
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', database="postgres")
        self.psql(f'CREATE DATABASE "{name}"', database="postgres")
        return self.settings(name)

    # -- internals -----------------------------------------------------------------------------
    def _ready(self) -> bool:
        result = subprocess.run([str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1",
                                 "-p", str(self.port), "-U", self.user, "-d", "postgres"],
                                capture_output=True, timeout=10)
        return result.returncode == 0

    def _initdb(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        self._chown(self.data)
        with tempfile.NamedTemporaryFile("w", dir=self.root, delete=False) as handle:
            handle.write(self.password + "\n")
            pwfile = Path(handle.name)
        self._chown(pwfile)
        try:
            result = subprocess.run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user,
                                     f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
                                     "--locale=C.UTF-8", "--no-instructions"],
                                    capture_output=True, text=True, timeout=120, **self._as_user())
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            shutil.rmtree(self.data, ignore_errors=True)
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")

    def _unprivileged_user(self) -> pwd.struct_passwd | None:
        """The account the server runs as: `postgres` when we are root, else ourselves (None)."""
        if os.geteuid() != 0:
            return None
        return pwd.getpwnam(os.environ.get("CBMIR_PG_OS_USER", "postgres"))

    def _as_user(self) -> dict:
        if self._run_as is None:
            return {}
        return {"user": self._run_as.pw_uid, "group": self._run_as.pw_gid, "extra_groups": [],
                "cwd": str(self.root)}

    def _chown(self, path: Path) -> None:
        if self._run_as is not None:
            os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)

    def _socket_dir(self) -> Path:
        """root/socket, or a short private folder when that path is too long for a unix socket
        (108 bytes with the `.s.PGSQL.<port>` name)."""
        wanted = self.root / "socket"
        if len(str(wanted)) + len(f"/.s.PGSQL.{self.port}.lock") < 100:
            return wanted
        return Path(tempfile.mkdtemp(prefix="cbmir-pg-"))

    def _make_reachable(self) -> None:
        """Own root (and the socket dir) as the server's user; give the folders above the search
        bit it needs to reach them."""
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if self._run_as is None:
            return
        for path in (self.root, self.socket_dir):
            self._chown(path)
        os.chmod(self.socket_dir, 0o700)
        for folder in [*self.root.parents, *self.socket_dir.parents]:
            mode = folder.stat().st_mode
            if not mode & 0o001:
                os.chmod(folder, mode | 0o001)


def main() -> None:
    """`python -m cbmir.tools.pg_server ROOT [--port N]`: run a private server in the foreground."""
    import argparse
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("root")
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    server = PostgresServer(args.root, port=args.port).start()
    print(server.uri(), flush=True)
    try:
        server.process.wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()

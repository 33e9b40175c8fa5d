"""A throw-away PostgreSQL server for the tests: `initdb` + `pg_ctl` in a temporary directory, listening on a free
port of 127.0.0.1 (password login) and on a unix socket in that directory. As root it runs as the `postgres` user
(else `nobody`): initdb refuses root. `tests/conftest.py` starts one per session, only when a test asks for it, and
stops it at the end, pass or fail."""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SUPERUSER = "innerdpo"


def find_bindir() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, else Debian's /usr/lib/postgresql/<newest>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(candidates[-1]).parent if candidates else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """One server; `url(db)` names a database on it, `new_database()` makes an empty one."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        if self.bindir is None:
            raise RuntimeError("PostgreSQL is not installed (no initdb on PATH nor in /usr/lib/postgresql/*/bin): "
                               "apt-get install postgresql")
        self.root = Path(tempfile.mkdtemp(prefix="innerdpo-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.password = secrets.token_hex(8)
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:
            self.user = next(name for name in ("postgres", "nobody") if _user_exists(name))
            os.chown(self.root, pwd.getpwnam(self.user).pw_uid, pwd.getpwnam(self.user).pw_gid)
        self._databases = 0
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        self._chown(pwfile)
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "-E", "UTF8", "--no-sync", "--no-instructions",
                  "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}")
        pwfile.unlink()

    def _chown(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, pwd.getpwnam(self.user).pw_uid, pwd.getpwnam(self.user).pw_gid)

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bindir / tool), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.root, timeout=120)
        if check and done.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()} {tail}")
        return done

    @property
    def options(self) -> str:
        """The server's settings: durability off (a test server), room for every worker a test starts."""
        return (f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=120 -c shared_buffers=32MB")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", self.options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Stop the server and wait for its processes to exit (immediate: nothing of it needs to survive)."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop", check=False)

    def restart(self) -> None:
        """What an administrator's restart does to clients: every connection is cut; the server comes back."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", self.options, "-m", "fast", "-w", "-t",
                  "60", "restart")

    def pause(self):
        """Stop the server (fast: sessions are cut); call the returned function to start it again."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
        return self.start

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres", password: str | None = "") -> str:
        """A URL of `database`; the password is the server's unless given (None: no password in the URL)."""
        secret = self.password if password == "" else password
        auth = SUPERUSER if secret is None else f"{SUPERUSER}:{secret}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str, database: str = "postgres") -> list[tuple]:
        """Run one statement as the superuser (autocommit); its rows, if any."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as con:
            cursor = con.execute(sql)
            return cursor.fetchall() if cursor.description else []

    def new_database(self) -> str:
        """An empty database of its own; its URL (password included)."""
        self._databases += 1
        name = f"t{os.getpid()}_{self._databases}"
        self.admin(f"CREATE DATABASE {name}")
        return self.url(name)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True

"""Where a workspace's store is: a URL (`sqlite:///PATH` or `postgresql://user@host:port/db`), chosen by `--store`,
$INNERDPO_STORE or the workspace itself, which remembers a non-default store in HOME/store.url so that every command
on every node finds it from `--home` alone.

A URL's password is never printed (`StoreURL.masked`) and never written to the workspace: libpq reads it from
$PGPASSWORD or ~/.pgpass on each node. A workspace bound to one store refuses another (a stray $INNERDPO_STORE would
otherwise show an empty table, or queue runs where no worker looks); `innerdpo store copy` moves it on purpose.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from innerdpo_bench.errors import UserError
from innerdpo_bench.store.run import STORE_FILE   # the default store: HOME/store.sqlite

STORE_ENV = "INNERDPO_STORE"
URL_FILE = "store.url"          # a workspace's remembered store, when it is not the default
SCHEMES = {"sqlite": "sqlite", "postgresql": "postgresql", "postgres": "postgresql"}
DEFAULT_PORT = 5432


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL. `text` may hold a password: pass it to the driver, print `masked` instead."""

    backend: str                 # "sqlite" | "postgresql"
    text: str
    path: Path | None = None     # sqlite: the file

    @property
    def masked(self) -> str:
        """The URL with any password shown as ***: what messages name."""
        return self.text if self.backend == "sqlite" else _with_password(self.text, "***")

    @property
    def without_password(self) -> str:
        """The URL with no password at all: what the workspace remembers."""
        return self.text if self.backend == "sqlite" else _with_password(self.text, None)

    def same_store(self, other: StoreURL) -> bool:
        """Whether both name one database: the password aside, an omitted port read as 5432."""
        return _identity(self) == _identity(other)


def parse_url(text: str, base: Path | None = None) -> StoreURL:
    """A StoreURL; UserError naming the forms it takes. A relative sqlite path is taken from `base` (default: the
    current directory) and made absolute, so that the URL means one file wherever it is read."""
    text = text.strip()
    parts = urlsplit(text)
    backend = SCHEMES.get(parts.scheme.lower())
    if backend is None or "://" not in text:
        raise UserError(f"store URL {_with_password(text, '***')!r} is not sqlite:///PATH or "
                        "postgresql://USER@HOST:PORT/DATABASE")
    if backend == "sqlite":
        raw = unquote(text.split("://", 1)[1])
        if not raw.startswith("/") or raw == "/":
            raise UserError(f"store URL {text!r} names no file: use sqlite:///PATH (sqlite:////abs/path for an "
                            "absolute one)")
        path = Path(raw[1:]).expanduser()
        path = (path if path.is_absolute() else (base or Path.cwd()) / path).absolute()
        return StoreURL("sqlite", f"sqlite:///{path}", path)
    if not parts.path.strip("/"):
        raise UserError(f"store URL {_with_password(text, '***')!r} names no database: "
                        "postgresql://USER@HOST:PORT/DATABASE")
    return StoreURL("postgresql", text)


def default_url(home: Path) -> StoreURL:
    return parse_url(f"sqlite:///{home / STORE_FILE}")


def bound_url(home: Path) -> StoreURL | None:
    """The store this workspace uses: HOME/store.url's, else its store.sqlite when there is one, else None (a new
    workspace, or a mistyped --home)."""
    try:
        text = (home / URL_FILE).read_text(encoding="utf-8").strip()
    except OSError as err:
        if isinstance(err, (FileNotFoundError, NotADirectoryError)) or err.errno == errno.ENAMETOOLONG:
            return default_url(home) if _is_file(home / STORE_FILE) else None   # (a too long name fails on open)
        raise UserError(f"cannot read {home / URL_FILE} ({err.strerror}); check its permissions") from err
    return parse_url(text, base=home)


def choose_url(home: Path, flag: str | None) -> tuple[StoreURL, bool]:
    """(the store to open, whether the workspace should remember it once it opened). `flag` is --store; without it
    $INNERDPO_STORE; either must agree with the store the workspace is bound to."""
    given = flag or os.environ.get(STORE_ENV) or None
    bound = bound_url(home)
    if given is None:
        return bound or default_url(home), False
    chosen = parse_url(given)
    if bound is not None and not chosen.same_store(bound):
        origin = "--store" if flag else f"${STORE_ENV}"
        raise UserError(f"workspace {home} uses the store {bound.masked}, not {chosen.masked} ({origin}); drop "
                        f"{origin}, or move its runs there with: innerdpo store copy --to URL --home {home}")
    return chosen, bound is None and not chosen.same_store(default_url(home))


def remember(home: Path, url: StoreURL) -> None:
    """Bind the workspace to `url` (no password), written atomically; the default store needs no file."""
    target = home / URL_FILE
    if url.same_store(default_url(home)):
        target.unlink(missing_ok=True)
        return
    partial = target.with_name(f".{URL_FILE}.{os.getpid()}")
    partial.write_text(url.without_password + "\n", encoding="utf-8")
    os.replace(partial, target)


def has_store(home: Path) -> bool:
    """Whether commands that only read have a store to open here (a bound workspace, a store.sqlite, or
    $INNERDPO_STORE), so a mistyped --home is caught before anything is opened."""
    return bool(os.environ.get(STORE_ENV)) or _is_file(home / URL_FILE) or _is_file(home / STORE_FILE)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:   # a name too long for the filesystem: no file there
        return False


def _with_password(text: str, password: str | None) -> str:
    """`text` with the password in its user part and in a `password=` query parameter replaced (None: removed)."""
    parts = urlsplit(text)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        name, has_password, _ = user.partition(":")
        if has_password:
            netloc = f"{name}:{quote(password, safe='*')}@{host}" if password is not None else f"{name}@{host}"
    query = parts.query
    if query and "password=" in query.lower():
        pairs = [(key, password if key.lower() == "password" else value) for key, value in parse_qsl(query)
                 if key.lower() != "password" or password is not None]
        query = urlencode(pairs, safe="*/")
    return parts._replace(netloc=netloc, query=query).geturl()


def _identity(url: StoreURL) -> tuple:
    if url.backend == "sqlite":
        return ("sqlite", str(url.path))
    parts = urlsplit(url.without_password)
    query = tuple(sorted(parse_qsl(parts.query)))
    return ("postgresql", parts.username, (parts.hostname or "").lower(), parts.port or DEFAULT_PORT,
            parts.path.strip("/"), query)

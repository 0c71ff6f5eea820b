"""API keys: created once and shown once, stored only as hashes, checked in constant time.

Keys are ``sk-sov-`` + 32 random bytes (URL-safe base64). Because they are high-entropy random secrets, not
passwords, a fast hash (SHA-256) is the right tool: a slow password hash adds nothing against guessing 256
bits and would cost every request milliseconds. The keys file is a JSON list of
``{"caller", "key_sha256", "floor", "ceiling", "rate_per_minute", "created", "team", "expires", "models"}``, written
atomically, mode 0600. ``team``, ``expires`` and ``models`` are optional (files written before they existed still
load): a key without a team belongs to the team ``default``, one without ``expires`` does not expire, and one
without ``models`` may use every configured model.

A running server re-reads the file when it changes (``ReloadingKeyStore``), so ``sovereign keys revoke`` takes
effect within about a second, without a restart.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError

from routing.levels import Level

KEY_PREFIX = "sk-sov-"
DEFAULT_KEYS_FILE = Path("var/keys.json")
CALLER_PATTERN = r"^[A-Za-z0-9_.:@+\-]{1,64}$"
"""Caller names appear in audit records and metrics, so they are short identifiers, not free text."""
_MAX_TOKEN_CHARS = 512
_MIN_REVOKE_PREFIX = 8  # hex characters of a key's SHA-256, as `sovereign keys list` shows them
DEFAULT_TEAM = "default"
"""The team of a caller that names none (a key created without ``--team``, a token no rule gives a team)."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caller:
    """Who a key (or an OIDC token) belongs to and what it may do: levels are raised to ``floor``, refused above
    ``ceiling``; ``models`` (None: every configured model) are the public model names it may use; ``expires``: the
    key stops working then (tokens carry their own expiry, checked when they are verified)."""

    name: str
    floor: Level | None
    ceiling: Level | None
    rate_per_minute: int | None
    team: str = DEFAULT_TEAM
    expires: dt.datetime | None = None
    models: frozenset[str] | None = None
    via: str = "key"  # "key" or "oidc": how the caller authenticated

    def expired(self, now: dt.datetime | None = None) -> bool:
        return self.expires is not None and (now or dt.datetime.now(dt.UTC)) >= self.expires

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models


class KeyFileError(ValueError):
    """The keys file is missing, unreadable or malformed; the message says where and why."""


def _level_or_none(value: object) -> object:
    if isinstance(value, str):
        return Level.parse(value)
    return value


OptLevel = Annotated[Level | None, BeforeValidator(_level_or_none)]
Ident = Annotated[str, StringConstraints(pattern=CALLER_PATTERN)]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=128)]
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"


def parse_expiry(text: str) -> str:
    """``--expires``: an RFC 3339 UTC time (``2027-03-31T18:00:00Z``), or a date, meaning the key works through the
    end of that day (UTC): it expires at the next midnight. Returns the normalised ``YYYY-MM-DDTHH:MM:SSZ``."""
    text = text.strip()
    try:
        if len(text) == 10:
            when = dt.datetime.combine(dt.date.fromisoformat(text) + dt.timedelta(days=1), dt.time(), dt.UTC)
        else:
            when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            if when.tzinfo is None:
                raise ValueError("a time needs a zone (Z or +00:00)")
    except ValueError as exc:
        raise ValueError(f"invalid expiry {text!r}: a date (YYYY-MM-DD) or an RFC 3339 time ({exc})") from None
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KeyEntry(BaseModel):
    """One row of the keys file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    caller: Annotated[str, StringConstraints(pattern=CALLER_PATTERN)]
    key_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    floor: OptLevel = None
    ceiling: OptLevel = None
    rate_per_minute: int | None = Field(default=None, ge=1)
    created: str
    team: Ident | None = None
    expires: Annotated[str, StringConstraints(pattern=TIMESTAMP_PATTERN)] | None = None
    models: tuple[ModelName, ...] | None = None

    def to_json(self) -> dict[str, object]:
        data = self.model_dump(exclude_none=True)
        data["floor"] = self.floor.label if self.floor is not None else None
        data["ceiling"] = self.ceiling.label if self.ceiling is not None else None
        data.setdefault("rate_per_minute", None)
        if self.models is not None:
            data["models"] = list(self.models)
        return data

    def caller_info(self) -> Caller:
        expires = (
            dt.datetime.strptime(self.expires, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC) if self.expires else None
        )
        return Caller(
            self.caller,
            self.floor,
            self.ceiling,
            self.rate_per_minute,
            team=self.team or DEFAULT_TEAM,
            expires=expires,
            models=frozenset(self.models) if self.models is not None else None,
        )


def hash_key(key: str) -> str:
    """SHA-256 hex of a key: what the keys file stores (fast hash: keys are 256-bit random, see the module)."""
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    """The keys a server accepts. Immutable after loading; reload by loading again."""

    def __init__(self, entries: list[KeyEntry]) -> None:
        self._entries = [(bytes.fromhex(e.key_sha256), e.caller_info()) for e in entries]

    @classmethod
    def empty(cls) -> KeyStore:
        return cls([])

    @classmethod
    def load(cls, path: Path | str) -> KeyStore:
        """Read a keys file; raise :class:`KeyFileError` with a clear message when it is missing or malformed."""
        return cls(read_entries(Path(path), missing_ok=False))

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, authorization_header: str | None) -> Caller | None:
        """The caller for ``Authorization: Bearer <key>``, or None for a missing, malformed or unknown key.

        Every stored hash is compared with ``hmac.compare_digest`` and the loop never exits early, so the time
        taken does not depend on which key (if any) matched.
        """
        token = bearer_token(authorization_header)
        if token is None:
            return None
        digest = hashlib.sha256(token.encode()).digest()
        found: Caller | None = None
        for stored, caller in self._entries:
            if hmac.compare_digest(digest, stored):
                found = caller
        return found


FileStamp = tuple[int, int, int]


def _stamp(path: Path) -> FileStamp | None:
    """What changes when the file is rewritten: inode (an atomic replace, a Kubernetes secret's symlink swap),
    modification time and size. None when it cannot be stat'ed."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class ReloadingKeyStore:
    """The keys file as a running server sees it: checked at most every ``check_every_s`` seconds (one
    ``stat``, on the request path) and re-read when it changed, so a created key works and a revoked key stops
    working without a restart. A file that cannot be read or is malformed after a change fails closed: no key
    is accepted until it is fixed (and an error is logged, without any key material)."""

    def __init__(
        self, path: Path | str, *, check_every_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._path = Path(path)
        self._stamp = _stamp(self._path)
        self._store = KeyStore.load(self._path)  # at start-up a bad file is an error the operator sees at once
        self._every = check_every_s
        self._clock = clock
        self._next_check = clock() + check_every_s

    def __len__(self) -> int:
        return len(self._store)

    def authenticate(self, authorization_header: str | None) -> Caller | None:
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + self._every
            self.refresh()
        return self._store.authenticate(authorization_header)

    def refresh(self) -> None:
        """Re-read the file if it changed since it was last read."""
        stamp = _stamp(self._path)
        if stamp == self._stamp:
            return
        try:
            store = KeyStore.load(self._path)
        except KeyFileError as exc:
            log.error("keys file changed and cannot be used; every key is refused until it is fixed: %s", exc)
            store = KeyStore.empty()
        self._store, self._stamp = store, stamp


def bearer_token(header: str | None, *, max_chars: int = _MAX_TOKEN_CHARS) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (ASCII, no spaces, at most ``max_chars``), else None."""
    if not header or not isinstance(header, str):
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > max_chars:
        return None
    if any(c.isspace() for c in token) or not token.isascii():
        return None
    return token


def read_entries(path: Path, *, missing_ok: bool) -> list[KeyEntry]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return []
        raise KeyFileError(f"keys file {path} not found (create keys with `sovereign keys create`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"keys file {path}: cannot read it: {exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise KeyFileError(f"keys file {path}: not valid JSON ({exc})") from None
    if not isinstance(data, list):
        raise KeyFileError(f"keys file {path}: expected a JSON list of key entries")
    entries: list[KeyEntry] = []
    seen: set[str] = set()
    for index, item in enumerate(data, start=1):
        try:
            entry = KeyEntry.model_validate(item)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}" for err in exc.errors()
            )
            raise KeyFileError(f"keys file {path}: entry {index}: {problems}") from None
        if entry.floor is not None and entry.ceiling is not None and entry.floor > entry.ceiling:
            raise KeyFileError(f"keys file {path}: entry {index}: floor is above ceiling")
        if entry.key_sha256 in seen:
            raise KeyFileError(f"keys file {path}: entry {index}: duplicate key_sha256")
        seen.add(entry.key_sha256)
        entries.append(entry)
    return entries


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise writers of one keys file. The file itself is replaced on write, so lock its folder."""
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_atomic(path: Path, entries: list[KeyEntry]) -> None:
    data = json.dumps([e.to_json() for e in entries], indent=2).encode() + b"\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def create_key(
    path: Path | str,
    caller: str,
    floor: Level | str | None = None,
    ceiling: Level | str | None = None,
    rate_per_minute: int | None = None,
    *,
    team: str | None = None,
    expires: str | None = None,
    models: list[str] | tuple[str, ...] | None = None,
) -> str:
    """Create a key for ``caller``, append its hash to the keys file (created with its folder) and return it.
    ``team``: the caller's team (``default`` when None); ``expires``: see :func:`parse_expiry`; ``models``: the
    public model names the key may use (None: all).

    Raises ``ValueError`` for an invalid caller name, team, expiry, level, rate, or a floor above the ceiling, and
    :class:`KeyFileError` when the existing file is malformed (it is never overwritten then).
    """
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        entry = KeyEntry(
            caller=caller,
            key_sha256=hash_key(key),
            floor=floor,
            ceiling=ceiling,
            rate_per_minute=rate_per_minute,
            created=created,
            team=team,
            expires=parse_expiry(expires) if expires is not None else None,
            models=tuple(models) if models is not None else None,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ValueError(f"invalid key entry: {problems}") from None
    if entry.floor is not None and entry.ceiling is not None and entry.floor > entry.ceiling:
        raise ValueError(f"floor {entry.floor.label} is above ceiling {entry.ceiling.label}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        entries = read_entries(path, missing_ok=True)
        _write_atomic(path, [*entries, entry])
    return key


def revoke_keys(path: Path | str, *, caller: str | None = None, sha256_prefix: str | None = None) -> list[KeyEntry]:
    """Remove every key of ``caller``, or the one key whose SHA-256 starts with ``sha256_prefix`` (at least 8
    hex characters, as `sovereign keys list` shows them, and matching exactly one key). Returns the removed
    entries; raises ``ValueError`` when nothing (or, for a prefix, more than one key) matches."""
    if (caller is None) == (sha256_prefix is None):
        raise ValueError("name either a caller or a key's sha256 prefix")
    prefix = (sha256_prefix or "").removeprefix("sha256:").rstrip("…").lower()
    if sha256_prefix is not None and (
        len(prefix) < _MIN_REVOKE_PREFIX or any(c not in "0123456789abcdef" for c in prefix)
    ):
        raise ValueError(f"a key's sha256 prefix is at least {_MIN_REVOKE_PREFIX} hex characters")
    path = Path(path)
    with _locked(path):
        entries = read_entries(path, missing_ok=False)
        if caller is not None:
            removed = [e for e in entries if e.caller == caller]
            if not removed:
                raise ValueError(f"no key for caller {caller!r} in {path}")
        else:
            removed = [e for e in entries if e.key_sha256.startswith(prefix)]
            if len(removed) != 1:
                raise ValueError(
                    f"{len(removed)} keys match sha256:{prefix} in {path}; give a longer prefix"
                    if removed
                    else f"no key matches sha256:{prefix} in {path}"
                )
        _write_atomic(path, [e for e in entries if e not in removed])
    return removed

"""Bearer tokens: a JSON-lines file of SHA-256 hashes, names and scopes; never the tokens.

One line per token::

    {"name": "shanghai-cac", "sha256": "<hex>", "regions": ["31"], "processors": [],
     "expires": "2027-01-01T00:00:00+00:00"}

``expires`` (ISO-8601 with a zone) may be null or left out: such a token
never expires. A token past its expiry is refused like an unknown one.

A token is shown once, when ``add_token`` makes it; the file keeps only its
hash, so a leaked file grants nothing. The file is read again whenever it
changes, so deleting a line revokes that token without a restart; a file that
cannot be read or parsed then grants nothing (fail closed) until it is fixed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from threading import Lock
from typing import Any, Final

from core.errors import FaceauditError
from dashboard.scope import Scope

TOKEN_PREFIX: Final = "fa_"
_HEX64: Final = re.compile(r"^[0-9a-f]{64}$")
_REGION: Final = re.compile(r"^[0-9]{1,6}$")
_KEYS: Final = frozenset(("name", "sha256", "regions", "processors"))
_OPTIONAL_KEYS: Final = frozenset(("expires",))
_log = logging.getLogger(__name__)


class TokenFileError(FaceauditError):
    """The token file is missing, unreadable or malformed, or a new token is invalid."""


@dataclass(frozen=True, slots=True)
class Token:
    """Who holds a token (its name, used in the access log), what it may see, and until when."""

    name: str
    scope: Scope
    expires: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and now >= self.expires


def hash_token(token: str) -> str:
    """The hex SHA-256 the file stores for ``token``."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_region_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is 1 to 6 digits (a GB/T 2260 code prefix), else raise ValueError."""
    if not _REGION.match(prefix):
        raise ValueError(f"region prefix {prefix!r} must be 1 to 6 digits")
    return prefix


def load_tokens(path: Path) -> dict[str, Token]:
    """Tokens by hash; blank lines and lines starting with ``#`` are skipped."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise TokenFileError(
            f"no token file at {path}: create a token with "
            f"`faceaudit dashboard --tokens {path} --make-token NAME`"
        ) from None
    except OSError as exc:
        raise TokenFileError(f"cannot read the token file {path}: {exc.strerror}") from None
    tokens: dict[str, Token] = {}
    names: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            digest, token = _parse_entry(json.loads(line))
        except (ValueError, TypeError) as exc:
            raise TokenFileError(f"{path}:{number}: {exc}") from None
        if digest in tokens or token.name in names:
            raise TokenFileError(f"{path}:{number}: duplicate token or name {token.name!r}")
        tokens[digest] = token
        names.add(token.name)
    return tokens


def add_token(
    path: Path, name: str, scope: Scope, replace: bool = False, expires: datetime | None = None
) -> str:
    """Make a token, append its hash line to ``path`` (created mode 0600), return the token.

    With ``replace``, a token of the same name is removed first: it stops working.
    ``expires``: when it stops working by itself (None: never).
    """
    existing = load_tokens(path) if path.exists() else {}
    if any(holder.name == name for holder in existing.values()):
        if not replace:
            raise TokenFileError(
                f"a token named {name!r} already exists in {path} (--replace issues a new one)"
            )
        _remove_name(path, name)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    entry = {
        "name": name,
        "sha256": hash_token(token),
        "regions": list(scope.regions),
        "processors": list(scope.processors),
        "expires": None if expires is None else expires.isoformat(),
    }
    try:
        _parse_entry(entry)
    except ValueError as exc:
        raise TokenFileError(str(exc)) from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise TokenFileError(f"cannot write the token file {path}: {exc.strerror}") from None
    return token


def revoke_token(path: Path, name: str) -> None:
    """Remove the token called ``name``: a running server refuses it at its next request."""
    if not any(holder.name == name for holder in load_tokens(path).values()):
        raise TokenFileError(f"no token named {name!r} in {path}")
    _remove_name(path, name)


def _remove_name(path: Path, name: str) -> None:
    """Rewrite ``path`` without the line of the token called ``name``; other lines stay."""
    kept = [
        line
        for line in path.read_text("utf-8").splitlines(keepends=True)
        if not line.strip() or line.lstrip().startswith("#") or json.loads(line)["name"] != name
    ]
    staged = path.with_name(path.name + ".new")
    try:
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.writelines(kept)
        os.replace(staged, path)
    except OSError as exc:
        raise TokenFileError(f"cannot rewrite the token file {path}: {exc.strerror}") from None


class TokenFile:
    """The token file as the server sees it: looked up per request, re-read when it changes."""

    def __init__(self, path: Path) -> None:
        """Read ``path`` now, so a bad file stops the server at start, not at the first login."""
        self.path = path
        self._lock = Lock()
        self._stamp = self._file_stamp()
        self._tokens = load_tokens(path)
        if not self._tokens:
            raise TokenFileError(
                f"the token file {path} holds no token: create one with "
                f"`faceaudit dashboard --tokens {path} --make-token NAME`"
            )

    def __len__(self) -> int:
        return len(self._tokens)

    def lookup(self, token: str) -> Token | None:
        """The holder of ``token``, or None for an unknown (or revoked) token."""
        with self._lock:
            stamp = self._file_stamp()
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._tokens = load_tokens(self.path)
                except TokenFileError as exc:
                    _log.error("token file changed and cannot be used, granting nothing: %s", exc)
                    self._tokens = {}
            holder = self._tokens.get(hash_token(token))
        if holder is None or holder.expired(datetime.now(UTC)):
            return None
        return holder

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _parse_entry(entry: Any) -> tuple[str, Token]:
    if not isinstance(entry, dict) or not _KEYS <= set(entry) <= _KEYS | _OPTIONAL_KEYS:
        raise ValueError(
            f"each line must be a JSON object with exactly {sorted(_KEYS)}, "
            f"and optionally {sorted(_OPTIONAL_KEYS)}"
        )
    name, digest = entry["name"], entry["sha256"]
    if not isinstance(name, str) or not name.strip() or not name.isprintable() or len(name) > 64:
        raise ValueError("name must be 1 to 64 printable characters")
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise ValueError("sha256 must be 64 lower-case hex digits (the hash, never the token)")
    regions, processors = entry["regions"], entry["processors"]
    if not isinstance(regions, list) or not all(isinstance(r, str) for r in regions):
        raise ValueError("regions must be a list of region code prefixes")
    for region in regions:
        check_region_prefix(region)
    if not isinstance(processors, list) or not all(isinstance(p, str) and p for p in processors):
        raise ValueError("processors must be a list of processor ids")
    return digest, Token(name, Scope(tuple(regions), tuple(processors)), _expiry(entry))


def _expiry(entry: dict[str, Any]) -> datetime | None:
    expires = entry.get("expires")
    if expires is None:
        return None
    try:
        moment = datetime.fromisoformat(expires) if isinstance(expires, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValueError("expires must be an ISO-8601 time with a zone, or null")
    return moment

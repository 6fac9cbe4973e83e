"""Every request, one JSON line: when, who (token name), what (method, path, query), status.

A WSGI middleware, so that requests refused before any view (401, 404) and
failed ones (500) are logged too. The view layer names the token holder in
the WSGI environ; a ``token`` query argument (``/login?token=``) is masked.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

from core.errors import FaceauditError

WHO: Final = "faceaudit.who"
"""WSGI environ key under which the app records the token holder's name."""
_SECRET_ARGS: Final = frozenset(("token",))

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def open_access_log(path: Path | None) -> logging.Logger:
    """A logger writing bare lines to ``path`` (appended), or to stderr when None."""
    logger = logging.Logger("faceaudit.dashboard.access")  # unregistered: no global state
    try:
        handler = (
            logging.FileHandler(path, encoding="utf-8")
            if path is not None
            else logging.StreamHandler(sys.stderr)
        )
    except OSError as exc:
        raise FaceauditError(f"cannot open the access log {path}: {exc.strerror}") from None
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    return logger


class AccessLog:
    """Wraps a WSGI app and logs each request when its response starts."""

    def __init__(self, app: WSGIApp, logger: logging.Logger) -> None:
        self._app = app
        self._logger = logger

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.monotonic()
        status: list[int] = []

        def start(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status.append(int(code.split(" ", 1)[0]))
            return start_response(code, headers, exc_info)

        try:
            return self._app(environ, start)
        finally:
            self._log(environ, status[-1] if status else 500, time.monotonic() - started)

    def _log(self, environ: dict[str, Any], status: int, seconds: float) -> None:
        entry = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "who": environ.get(WHO),
            "remote": environ.get("REMOTE_ADDR"),
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "query": _masked(environ.get("QUERY_STRING", "")),
            "status": status,
            "ms": round(seconds * 1000, 1),
        }
        self._logger.info(json.dumps(entry, ensure_ascii=False))


def _masked(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, "***" if k in _SECRET_ARGS else v) for k, v in pairs])

"""Proxy headers, believed only from the proxy the operator names (``--trusted-proxy``).

Behind a TLS-terminating proxy the dashboard sees plain HTTP from the proxy;
the proxy's ``X-Forwarded-Proto``, ``-For``, ``-Host`` and ``-Port`` say what
the client really used, so that the login cookie is marked Secure and the
access log names the client. From anyone else those headers are a lie anyone
can tell, and are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.middleware.proxy_fix import ProxyFix

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class TrustedProxy:
    """WSGI middleware: one proxy hop's headers applied from `proxy`'s address, else removed."""

    def __init__(self, app: WSGIApp, proxy: str | None) -> None:
        self._app = app
        self._proxy = proxy
        self._fixed = ProxyFix(app, x_for=1, x_proto=1, x_host=1, x_port=1)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if self._proxy is not None and environ.get("REMOTE_ADDR") == self._proxy:
            return self._fixed(environ, start_response)
        for name in [key for key in environ if key.startswith("HTTP_X_FORWARDED_")]:
            del environ[name]
        return self._app(environ, start_response)

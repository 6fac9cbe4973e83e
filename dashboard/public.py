"""Routes open without a token: the health check, and logging in and out."""

from __future__ import annotations

import secrets
from typing import Final
from urllib.parse import urlsplit

from flask import Blueprint, Response, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from dashboard.access_log import WHO
from dashboard.context import reports, tokens

public = Blueprint("public", __name__)

COOKIE: Final = "faceaudit_token"
COOKIE_MAX_AGE: Final = 12 * 3600
NONCE_COOKIE: Final = "faceaudit_login"
NONCE_MAX_AGE: Final = 15 * 60


@public.get("/healthz")
def healthz() -> ResponseReturnValue:
    """200 while the store answers; no token needed, nothing about the data shown."""
    try:
        healthy = reports().healthy()
    except Exception:  # any store failure means unhealthy; the reason goes to the server log
        healthy = False
    return ({"status": "ok"}, 200) if healthy else ({"status": "store unavailable"}, 503)


@public.get("/login")
def login_page() -> ResponseReturnValue:
    """The login form. A token in the URL is not taken: it would land in history and proxy
    logs, and a link could log a regulator in under another token's scope."""
    return login_form(_local_path(request.args.get("next")))


@public.post("/login")
def login() -> ResponseReturnValue:
    """Exchange the form's token for an HttpOnly cookie holding it.

    The form carries a nonce that must match a cookie only this site sets
    (SameSite=Strict), so another site cannot post its own token to log a
    regulator in under it (login CSRF). The cookie is checked against the
    token file on every request, like a bearer token, so revoking the token
    logs the browser out too.
    """
    target = _local_path(request.form.get("next"))
    sent, kept = request.form.get("nonce", ""), request.cookies.get(NONCE_COOKIE, "")
    if not sent or not kept or not secrets.compare_digest(sent, kept):
        return login_form(target, "the login form has expired: log in again", 400)
    token = request.form.get("token", "").strip()
    holder = tokens().lookup(token) if token else None
    if holder is None:
        return login_form(target, "unknown or expired token", 401)
    request.environ[WHO] = holder.name
    response = redirect(target or url_for("pages.overview"))
    response.set_cookie(
        COOKIE,
        token,
        max_age=COOKIE_MAX_AGE,
        httponly=True,
        secure=request.is_secure,
        samesite="Lax",
    )
    response.delete_cookie(NONCE_COOKIE)
    return response


def login_form(target: str | None, error: str | None = None, status: int = 200) -> Response:
    """The login page with its nonce, in the form and in its cookie: the one the browser
    holds if any (a page's other requests, a second tab, show the form too), else a new one."""
    nonce = request.cookies.get(NONCE_COOKIE) or secrets.token_urlsafe(24)
    page = render_template("login.html", next=target, error=error, nonce=nonce)
    response = make_response(page, status)
    response.set_cookie(
        NONCE_COOKIE,
        nonce,
        max_age=NONCE_MAX_AGE,
        httponly=True,
        secure=request.is_secure,
        samesite="Strict",
    )
    return response


@public.get("/logout")
def logout() -> ResponseReturnValue:
    response = redirect(url_for("public.login_page"))
    response.delete_cookie(COOKIE)
    return response


def _local_path(target: str | None) -> str | None:
    """``target`` if it is a path on this server, so a login link cannot redirect elsewhere.

    Browsers drop tabs and newlines from URLs and read a backslash as a slash, so
    ``/\t/evil.example`` would leave the site: any control character, space or backslash
    refuses the target.
    """
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    if any(ord(char) < 0x21 or char in "\\\x7f" for char in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target

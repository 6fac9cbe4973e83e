"""The ``faceaudit dashboard`` subcommand: serve the regulator dashboard, or issue a token.

Serving opens the store for the server's whole lifetime. An embedded chDB
store can be open in one process only, so the validator must not run on the
same ``chdb://`` path meanwhile (``open_store`` says so if it is); point both
at a ClickHouse server to run them together.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn

from consumers.rules.catalogue import PROFILES
from consumers.settings import Settings
from core.clients import redact
from core.errors import FaceauditError
from dashboard.auth import check_region_prefix
from faceaudit.home import HOME, home

if TYPE_CHECKING:
    from waitress.server import BaseWSGIServer

    from dashboard.auth import TokenFile
    from dashboard.db import Database

TOKENS_FILE: Final = "dashboard-tokens.jsonl"
DEFAULT_EXPIRY: Final = "30d"
DEFAULT_PORT: Final = 8080
EXIT_OK: Final = 0


def add_dashboard_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``faceaudit dashboard``."""
    dash = commands.add_parser(
        "dashboard",
        help="serve the regulator dashboard: pages, JSON API and CSV export",
        description="Serve server-rendered pages and a JSON API over the audit store: "
        "overview, rules, processors, violations (filters, drill-down, CSV). Every route "
        "but /healthz needs a token; a token sees only its regions and processors. "
        "With --make-token, issue a token instead and exit.",
    )
    dash.add_argument(
        "--clickhouse",
        metavar="DSN",
        help="chdb://PATH (embedded; not while the validator has it open) or "
        "http(s)://user:pass@host:8123/faceaudit (FACEAUDIT_CLICKHOUSE)",
    )
    add_serving_flags(dash)
    dash.add_argument(
        "--profile",
        choices=PROFILES,
        help="profile whose FR-FILING threshold is shown (FACEAUDIT_PROFILE, default cac-2025)",
    )
    issue = dash.add_argument_group(
        "issuing a token", "prints a new token once on stdout and stores only its SHA-256"
    )
    issue.add_argument("--make-token", metavar="NAME", help="issue a token for NAME and exit")
    issue.add_argument(
        "--replace",
        action="store_true",
        help="replace an existing token of that NAME (the old token stops working)",
    )
    issue.add_argument(
        "--expires",
        type=_expiry,
        default=_expiry(DEFAULT_EXPIRY),
        metavar="WHEN",
        help=f"when the token stops working: a duration (30d, 12h) or an ISO-8601 time, "
        f"or never (default {DEFAULT_EXPIRY})",
    )
    issue.add_argument(
        "--regions",
        type=_regions,
        default=(),
        metavar="PREFIXES",
        help="region code prefixes the token sees, comma-separated, e.g. 31 or 31,4403 "
        "(default: all regions)",
    )
    issue.add_argument(
        "--processors",
        type=_items,
        default=(),
        metavar="IDS",
        help="processor ids the token sees, comma-separated (default: all processors)",
    )
    dash.add_argument(
        "--revoke", metavar="NAME", help="remove the token NAME (it stops working) and exit"
    )
    dash.set_defaults(handler=_dashboard)


def add_serving_flags(parser: argparse.ArgumentParser) -> None:
    """Where the dashboard listens, its tokens, its access log and the proxy it trusts."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--tokens",
        type=Path,
        metavar="FILE",
        help=f"token file: JSON lines of token hashes and scopes "
        f"(default $FACEAUDIT_HOME/{TOKENS_FILE}, i.e. {HOME / TOKENS_FILE})",
    )
    parser.add_argument(
        "--access-log",
        type=Path,
        metavar="FILE",
        help="append one JSON line per request (who, path, status, time) here; default stderr",
    )
    parser.add_argument(
        "--trusted-proxy",
        metavar="ADDRESS",
        help="the TLS proxy in front (its IP address): only its X-Forwarded-* headers are "
        "believed, so the login cookie is marked Secure behind it",
    )


def _dashboard(args: argparse.Namespace) -> int:
    path = tokens_path(args)
    if args.make_token is not None:
        return _make_token(path, args)
    if args.regions or args.processors or args.replace:
        raise FaceauditError("--regions, --processors and --replace only go with --make-token NAME")
    if args.revoke is not None:
        from dashboard.auth import revoke_token

        revoke_token(path, args.revoke)
        print(f"faceaudit: token {args.revoke!r} removed from {path}", file=sys.stderr)
        return EXIT_OK
    return _serve(path, args)


def _make_token(path: Path, args: argparse.Namespace) -> int:
    from dashboard.auth import add_token
    from dashboard.scope import Scope

    scope = Scope(args.regions, args.processors)
    token = add_token(path, args.make_token, scope, replace=args.replace, expires=args.expires)
    print(token)
    until = "never expires" if args.expires is None else f"expires {args.expires.isoformat()}"
    print(
        f"faceaudit: token {args.make_token!r} ({scope.describe()}; {until}) added to {path}; "
        "it is shown only now, and the file keeps only its hash",
        file=sys.stderr,
    )
    return EXIT_OK


def _serve(path: Path, args: argparse.Namespace) -> int:
    from consumers.store import open_reader
    from dashboard.auth import TokenFile
    from dashboard.db import Database

    settings = Settings.resolve({"clickhouse": args.clickhouse, "profile": args.profile})
    tokens = TokenFile(path)  # a bad token file stops us before the store is taken
    db = Database(open_reader(settings.clickhouse))  # it never migrates or writes
    try:
        server = dashboard_server(db, tokens, settings.profile, args)
        print(
            f"faceaudit dashboard: serving {server_url(server, args.host)} "
            f"(store {redact(settings.clickhouse)}, profile {settings.profile}, "
            f"{len(tokens)} token{'s' if len(tokens) != 1 else ''} from {path}); "
            "Ctrl-C or SIGTERM stops it",
            file=sys.stderr,
            flush=True,
        )
        signal.signal(signal.SIGTERM, _interrupt)
        server.run()  # returns on KeyboardInterrupt, which SIGTERM raises too
        server.close()
    finally:
        db.close()
    return EXIT_OK


def tokens_path(args: argparse.Namespace) -> Path:
    return args.tokens or home() / TOKENS_FILE


def dashboard_server(
    db: Database,
    tokens: TokenFile,
    profile: str,
    args: argparse.Namespace,
    refresh_seconds: int | None = None,
) -> BaseWSGIServer:
    """The dashboard's HTTP server over `db`, bound to ``--host``/``--port`` (not yet run)."""
    from waitress.server import create_server

    from consumers.rules.catalogue import load_catalogue
    from dashboard.access_log import open_access_log
    from dashboard.app import create_app
    from dashboard.queries import Reports

    reports = Reports(db, load_catalogue(), profile)
    app = create_app(
        reports, tokens, open_access_log(args.access_log), args.trusted_proxy, refresh_seconds
    )
    try:
        return create_server(app, host=args.host, port=args.port, ident="faceaudit")
    except OSError as exc:
        raise FaceauditError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None


def server_url(server: BaseWSGIServer, host: str) -> str:
    bracketed = f"[{host}]" if ":" in host else host
    return f"http://{bracketed}:{server.effective_port}/"


def _interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def _expiry(text: str) -> datetime | None:
    """``30d``, ``12h``, ``90m`` from now; an ISO-8601 time (UTC if it names no zone); ``never``."""
    if text == "never":
        return None
    match = re.fullmatch(r"(\d+)([dhm])", text)
    if match:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[match[2]]
        return datetime.now(UTC) + timedelta(**{unit: int(match[1])})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration (30d, 12h, 90m), an ISO-8601 time or never: {text!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number (0 picks a free one), not {value}")
    return value


def _regions(text: str) -> tuple[str, ...]:
    try:
        return tuple(check_region_prefix(item) for item in _items(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _items(text: str) -> tuple[str, ...]:
    """Comma-separated values, blanks dropped."""
    return tuple(item.strip() for item in text.split(",") if item.strip())

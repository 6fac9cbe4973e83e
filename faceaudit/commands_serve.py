"""The ``faceaudit serve`` subcommand: the whole live system in one process."""

from __future__ import annotations

import argparse

from faceaudit.commands_dashboard import add_serving_flags
from faceaudit.validator_flags import add_validator_flags, validator_settings


def add_serve_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``faceaudit serve``."""
    srv = commands.add_parser(
        "serve",
        help="validate the stream and serve the dashboard and /metrics, in one process",
        description="Run the validator (as faceaudit consume does), the regulator dashboard "
        "(as faceaudit dashboard does; its overview reloads itself while events arrive) and "
        "Prometheus /metrics in one process over one store, so the embedded chDB store "
        "serves the whole live system. Flags override FACEAUDIT_* variables.",
    )
    add_validator_flags(srv)
    add_serving_flags(srv)
    srv.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from faceaudit.serve import serve

    return serve(validator_settings(args), args)

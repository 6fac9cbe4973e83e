"""The ``--trust`` flag of the commands that judge records (consume, check)."""

from __future__ import annotations

import argparse

from consumers.keyring import TRUST_MODES


def add_trust_flag(parser: argparse.ArgumentParser) -> None:
    """``--trust signatures`` (the default) or the explicit opt-out ``--trust none``."""
    parser.add_argument(
        "--trust",
        choices=TRUST_MODES,
        help="signatures (default): a consent, deployment or deletion record counts only if "
        "signed by a registered processor key (REG-UNSIGNED-RECORD); none: every record "
        "counts, which the start-up line and metrics say (FACEAUDIT_TRUST)",
    )

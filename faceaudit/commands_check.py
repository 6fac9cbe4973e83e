"""The ``faceaudit check`` and ``faceaudit rules`` subcommands: flags in, packages called.

``check`` has its own exit codes (0 clean, 1 violations, 2 bad input or usage,
as argparse uses 2 for usage errors), so it reports unreadable inputs itself
instead of raising FaceauditError, whose exit code 1 would read as "violations".
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from contextlib import ExitStack
from typing import Final, TextIO

from consumers.keyring import TRUST_MODES, trust_line
from consumers.rules.catalogue import DEFAULT_PROFILE, PROFILES
from faceaudit.trust_flag import add_trust_flag

EXIT_CLEAN: Final = 0
EXIT_VIOLATIONS: Final = 1
EXIT_BAD_INPUT: Final = 2


def add_check_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``faceaudit check``."""
    check = commands.add_parser(
        "check",
        help="judge JSON-lines or Avro files of records offline",
        description="Judge files of records with the same rules as the validator: the key "
        "records and then all consent, deployment and deletion records of all inputs are "
        "loaded first (each must be signed, as its JSON form's key_id and signature, unless "
        "--trust none), then events are judged in input order. "
        "Exit status: 0 no violations, 1 violations found, 2 bad input.",
    )
    check.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="a JSON-lines file (records in the contract's JSON form, with a type field) or an "
        "Avro object container file; - reads standard input",
    )
    check.add_argument(
        "--policy",
        "--profile",
        dest="profile",
        choices=PROFILES,
        default=DEFAULT_PROFILE,
        help=f"rule profile (default {DEFAULT_PROFILE})",
    )
    check.add_argument(
        "--format",
        choices=("jsonl", "table"),
        default="jsonl",
        help="jsonl: one violation object per line (default); table: counts, then a list",
    )
    check.add_argument("--output", metavar="FILE", help="write violations here, not stdout")
    add_trust_flag(check)
    check.set_defaults(handler=_check)


def add_rules_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``faceaudit rules``."""
    rules = commands.add_parser(
        "rules",
        help="print the rule catalogue",
        description="Every rule: id, title, articles, severity per profile, what fires it and "
        "an example. docs/rules.md is this command's markdown output.",
    )
    rules.add_argument("--profile", choices=PROFILES, help="show severities in this profile only")
    rules.add_argument("--format", choices=("text", "markdown"), default="text")
    rules.set_defaults(handler=_rules)


def _check(args: argparse.Namespace) -> int:
    from consumers.check import check, writer_for
    from consumers.process import prepare_engine_process
    from consumers.readers import InputError, open_sources
    from consumers.rules.catalogue import load_catalogue

    prepare_engine_process()
    try:
        sources = open_sources(args.paths, sys.stdin.buffer)
    except InputError as exc:
        return _bad_input(str(exc))
    catalogue = load_catalogue()
    args.trust = args.trust or os.environ.get("FACEAUDIT_TRUST") or "signatures"
    if args.trust not in TRUST_MODES:
        return _bad_input(f"FACEAUDIT_TRUST={args.trust!r} is not one of {', '.join(TRUST_MODES)}")
    if args.trust == "none":
        print(f"faceaudit check: {trust_line(args.trust)}", file=sys.stderr)
    with ExitStack() as stack:
        try:
            out = _output(args.output, stack)
        except OSError as exc:
            return _bad_input(f"cannot write {args.output}: {exc.strerror}")
        writer = writer_for(args.format, out, args.profile, catalogue.version)
        try:
            stats = check(
                sources, args.profile, writer.write, _print_bad, catalogue, trust=args.trust
            )
            writer.close()
        except BrokenPipeError:  # e.g. `faceaudit check ... | head`: the reader has gone
            _silence_stdout()
            return 128 + signal.SIGPIPE
        except OSError as exc:  # an input vanished between the passes, or the disk is full
            return _bad_input(f"{exc.filename or 'output'}: {exc.strerror or exc}")
    print(f"faceaudit check: {stats.summary(len(sources))}", file=sys.stderr)
    if stats.bad_records:
        return EXIT_BAD_INPUT
    return EXIT_VIOLATIONS if stats.violations else EXIT_CLEAN


def _output(path: str | None, stack: ExitStack) -> TextIO:
    """Standard output, or ``path`` opened for writing (closed when the stack unwinds)."""
    if path is None:
        return sys.stdout
    return stack.enter_context(open(path, "w", encoding="utf-8"))


def _bad_input(message: str) -> int:
    print(f"faceaudit: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _print_bad(line: str) -> None:
    print(line, file=sys.stderr)


def _rules(args: argparse.Namespace) -> int:
    from consumers.rules.catalogue import load_catalogue
    from consumers.rules.reference import render_markdown, render_text

    render = render_markdown if args.format == "markdown" else render_text
    sys.stdout.write(render(load_catalogue(), args.profile))
    return EXIT_CLEAN

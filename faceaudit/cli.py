"""The `faceaudit` command line: a thin layer that parses flags and calls the packages."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from consumers.settings import Settings
from core.errors import FaceauditError
from core.local_kafka import ROLES
from faceaudit.commands_check import add_check_parser, add_rules_parser
from faceaudit.commands_dashboard import add_dashboard_parser
from faceaudit.commands_dead_letters import add_dead_letters_parser
from faceaudit.commands_gateway import add_gateway_parser
from faceaudit.commands_keys import add_keys_parser
from faceaudit.commands_migrate import add_migrate_parser
from faceaudit.commands_serve import add_serve_parser
from faceaudit.commands_verify import add_verify_parser
from faceaudit.home import home
from faceaudit.kafka_flags import add_kafka_flags, kafka_flags
from faceaudit.validator_flags import add_validator_flags, positive_int, share, validator_settings

if TYPE_CHECKING:
    from core.clients import KafkaConfig
    from producers.simulate import SigningKeys
    from schemas.signatures import Signer

EXIT_OK, EXIT_ERROR = 0, 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="faceaudit: %(levelname)s: %(message)s")
    # kafka-python logs every reconnect and shutdown step; faceaudit reports
    # what the user must act on itself.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    # `kill -USR1 PID` prints every thread's stack: where a stuck run waits.
    faulthandler.register(signal.SIGUSR1, file=sys.__stderr__)
    try:
        return args.handler(args)
    except FaceauditError as exc:
        print(f"faceaudit: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="faceaudit",
        description="Audit face-recognition events against the CAC face-recognition "
        "Measures and PIPL: Kafka in, ClickHouse out.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_broker(commands)
    _add_simulate(commands)
    _add_consume(commands)
    add_check_parser(commands)
    add_rules_parser(commands)
    add_dead_letters_parser(commands)
    add_keys_parser(commands)
    add_verify_parser(commands)
    add_dashboard_parser(commands)
    add_serve_parser(commands)
    add_migrate_parser(commands)
    add_gateway_parser(commands)
    return parser


# -- broker -------------------------------------------------------------------


def _add_broker(commands: argparse._SubParsersAction) -> None:
    broker = commands.add_parser(
        "broker",
        help="start, stop or inspect the local single-node Kafka broker; add its users",
        description="A local Apache Kafka broker (KRaft, single node, 127.0.0.1) whose jars "
        "and data live under .faceaudit/ (FACEAUDIT_HOME). It is secured: SASL_SSL with "
        "SCRAM-SHA-512 users, its own CA under .faceaudit/kafka/tls, ACLs per role "
        "(docs/security.md).",
    )
    ports = argparse.ArgumentParser(add_help=False)
    ports.add_argument("--port", type=int, default=9092, help="client port (default 9092)")
    ports.add_argument(
        "--controller-port", type=int, default=9093, help="KRaft controller port (default 9093)"
    )
    actions = broker.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, what in (
        ("start", "start it (made and formatted on first start) and create the topics"),
        ("stop", "stop it"),
        ("status", "whether it runs"),
    ):
        actions.add_parser(action, parents=[ports], help=what, description=what)
    user = actions.add_parser("user", help="manage its SCRAM users", description="SCRAM users")
    user_actions = user.add_subparsers(dest="user_action", required=True, metavar="ACTION")
    add = user_actions.add_parser(
        "add",
        parents=[ports],
        help="add a user with a random password and its role's ACLs",
        description="Add a SCRAM-SHA-512 user to the running local broker, with a random "
        "password in an owner-only file (its path is printed, never the password) and the "
        "ACLs of its role: producer writes the event and registry topics; validator reads "
        "them (groups faceaudit-*) and writes the findings; operator writes the keys topic; "
        "reader reads the violations (groups named NAME*); admin is a super user.",
    )
    add.add_argument("name", help="user name: letters, digits, '.', '_', '-'")
    add.add_argument("--role", required=True, choices=ROLES, help="what the user may do")
    prepare = actions.add_parser(
        "prepare",
        help="create the topics and the users' ACLs on any Kafka cluster (as its admin)",
        description="For a broker that is not the local one (compose, a cluster): create "
        "the pipeline's topics if missing and the ACLs of each user's role, connecting as a "
        "super user given by the Kafka flags. The users' SCRAM credentials are the cluster's "
        "to make.",
    )
    prepare.add_argument("--bootstrap", help="Kafka bootstrap servers (FACEAUDIT_BOOTSTRAP)")
    add_kafka_flags(prepare)
    prepare.add_argument(
        "--partitions", type=positive_int, default=12, help="partitions per topic (12)"
    )
    prepare.add_argument(
        "--user",
        dest="users",
        action="append",
        type=_user_role,
        required=True,
        metavar="NAME:ROLE",
        help=f"a user and its role ({', '.join(ROLES)}); repeat for each",
    )
    broker.set_defaults(handler=_broker)


def _user_role(text: str) -> tuple[str, str]:
    name, _, role = text.partition(":")
    if not name or role not in ROLES:
        raise argparse.ArgumentTypeError(f"{text!r}: NAME:ROLE, the role one of {', '.join(ROLES)}")
    return name, role


def _prepare(args: argparse.Namespace) -> int:
    from faceaudit.broker import BrokerError, ensure_topics, grant_acls

    kafka = Settings.resolve({"bootstrap": args.bootstrap, **kafka_flags(args)}, role="admin").kafka
    try:
        ensure_topics(kafka, partitions=args.partitions)
        grant_acls(kafka, dict(args.users))
    except BrokerError as exc:
        raise FaceauditError(str(exc)) from None
    names = ", ".join(f"{name} ({role})" for name, role in args.users)
    print(f"topics and ACLs ready on {kafka.bootstrap} for {names}")
    return EXIT_OK


def _broker(args: argparse.Namespace) -> int:
    from faceaudit.broker import BrokerError, LocalBroker, ensure_topics

    if args.action == "prepare":
        return _prepare(args)

    broker = LocalBroker(home(), port=args.port, controller_port=args.controller_port)
    try:
        if args.action == "start":
            bootstrap = broker.start()
            ensure_topics(broker.kafka("admin"))
            print(bootstrap)
        elif args.action == "stop":
            print("stopped" if broker.stop() else "not running")
        elif args.action == "user":
            if not broker.status().running:
                raise FaceauditError("the local broker is not running: faceaudit broker start")
            path = broker.add_user(args.name, args.role)
            print(f"added {args.role} {args.name!r}; its password is in {path}")
        else:
            status = broker.status()
            state = f"running (pid {status.pid})" if status.running else "stopped"
            print(f"{state} {status.bootstrap}")
            return EXIT_OK if status.running else EXIT_ERROR
    except BrokerError as exc:
        raise FaceauditError(str(exc)) from None
    return EXIT_OK


# -- simulate -----------------------------------------------------------------


def _add_simulate(commands: argparse._SubParsersAction) -> None:
    sim = commands.add_parser(
        "simulate",
        help="stream events from a simulated camera fleet into Kafka",
        description="Register deployments and consents, then send capture and match events "
        "from a simulated fleet; a share of them breaks rules on purpose.",
    )
    sim.add_argument("--bootstrap", help="Kafka bootstrap servers (FACEAUDIT_BOOTSTRAP)")
    add_kafka_flags(sim)
    sim.add_argument("--events", type=positive_int, default=10_000, help="events to send")
    sim.add_argument("--devices", type=positive_int, default=20, help="devices in the fleet")
    sim.add_argument("--seed", type=int, default=1, help="random seed (same seed, same fleet)")
    sim.add_argument("--rate", type=float, help="events per second (default: as fast as possible)")
    sim.add_argument(
        "--violation-rate",
        type=share,
        default=0.05,
        help="share of events that break a rule on purpose, 0..1 (default 0.05)",
    )
    sim.add_argument(
        "--gap-rate",
        type=share,
        default=0.0,
        help="share of events sent after their device lost one (AUDIT-SEQ-GAP), 0..1 (default 0)",
    )
    sim.add_argument(
        "--tamper-rate",
        type=share,
        default=0.0,
        help="share of events after which their device vouches for another head "
        "(AUDIT-CHECKPOINT-MISMATCH), 0..1 (default 0)",
    )
    sim.add_argument(
        "--skew-rate",
        type=share,
        default=0.0,
        help="share of events dated an hour ahead, as by a device whose clock jumped "
        "(AUDIT-CLOCK-SKEW), 0..1 (default 0)",
    )
    sim.add_argument(
        "--stop-signing",
        action="store_true",
        help="have one device stop signing checkpoints a quarter into the stream "
        "(AUDIT-UNCHECKPOINTED, once its run outgrows the audit's window)",
    )
    sim.add_argument(
        "--registry-faults",
        action="store_true",
        help="also send a consent signed by another processor (REG-UNSIGNED-RECORD) and "
        "an un-withdrawal (REG-CONSENT-REWRITTEN)",
    )
    sim.add_argument(
        "--unsigned",
        action="store_true",
        help="send the registry records unsigned (for a validator under --trust none); by "
        "default a key per processor is registered as the local broker's operator",
    )
    sim.add_argument(
        "--history",
        type=positive_int,
        metavar="DAYS",
        help="send DAYS days of history instead (the demo's week): event times over the last "
        "DAYS days (at most 7) with a daily rhythm, incident hours in which every rule of the "
        "catalogue is broken, and an unfiled hotel chain crossing the filing threshold "
        "(its check-ins come on top of --events)",
    )
    sim.add_argument(
        "--profile", help="with --history: whose filing threshold (FACEAUDIT_PROFILE; cac-2025)"
    )
    sim.add_argument("--no-progress", action="store_true", help="no progress bar")
    sim.set_defaults(handler=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    from faceaudit.fleet_keys import register_fleet_keys
    from producers.simulate import simulate

    if args.unsigned and (args.tamper_rate or args.registry_faults or args.stop_signing):
        raise FaceauditError(
            "--tamper-rate, --registry-faults and --stop-signing need signed records: "
            "drop --unsigned"
        )

    kafka = Settings.resolve(
        {"bootstrap": args.bootstrap, **kafka_flags(args)}, role="producer"
    ).kafka

    def signing_keys(processor_ids: list[str], valid_from: datetime) -> dict[str, Signer]:
        operator = Settings.resolve({"bootstrap": args.bootstrap}, role="operator").kafka
        return register_fleet_keys(operator, processor_ids, valid_from)

    if args.history is not None:
        return _history(args, kafka, signing_keys)
    report = simulate(
        kafka,
        events=args.events,
        devices=args.devices,
        seed=args.seed,
        rate=args.rate,
        violation_rate=args.violation_rate,
        progress=not args.no_progress,
        gap_rate=args.gap_rate,
        signing_keys=None if args.unsigned else signing_keys,
        tamper_rate=args.tamper_rate,
        registry_faults=args.registry_faults,
        skew_rate=args.skew_rate,
        stop_signing=args.stop_signing,
    )
    rate = report.events_sent / report.seconds if report.seconds else 0.0
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(report.by_kind.items()))
    print(
        f"sent {report.events_sent} events ({kinds}) and {report.registry_records} registry "
        f"records to {kafka.bootstrap} in {report.seconds:.1f} s ({rate:,.0f} events/s)"
    )
    broken = sum(report.intended_violations.values())
    print(f"{broken} events break a rule on purpose")
    return EXIT_OK


def _history(args: argparse.Namespace, kafka: KafkaConfig, signing_keys: SigningKeys) -> int:
    from faceaudit.demo_history import history

    if args.unsigned or args.rate:
        raise FaceauditError(
            "--history sends signed records as fast as it can: drop --unsigned and --rate"
        )
    if args.history > 7:
        raise FaceauditError(
            f"--history {args.history}: at most 7 days, the audit's tolerance for late "
            "events (AUDIT-CLOCK-SKEW)"
        )
    report = history(
        kafka,
        profile=Settings.resolve({"profile": args.profile}).profile,
        days=args.history,
        events=args.events,
        devices=args.devices,
        seed=args.seed,
        signing_keys=signing_keys,
        progress=not args.no_progress,
    )
    rules = len(report.broken)
    print(
        f"sent {report.events_sent:,} events dated {report.first:%Y-%m-%d %H:%M} to "
        f"{report.last:%Y-%m-%d %H:%M} UTC and {report.registry_records:,} registry records "
        f"to {kafka.bootstrap} in {report.seconds:.1f} s; {rules} rules broken on purpose"
    )
    return EXIT_OK


# -- consume ------------------------------------------------------------------


def _add_consume(commands: argparse._SubParsersAction) -> None:
    con = commands.add_parser(
        "consume",
        help="validate the event stream and store everything in ClickHouse",
        description="Join the consumer group, judge every capture and match event against "
        "the rule catalogue, store events, violations and dead letters in ClickHouse, and "
        "commit offsets only after they are stored. Flags override FACEAUDIT_* variables.",
    )
    add_validator_flags(con)
    con.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="validator processes in the group (1); with chDB the parent owns the store",
    )
    con.set_defaults(handler=_consume)


def _consume(args: argparse.Namespace) -> int:
    from faceaudit.consume import consume

    return consume(validator_settings(args))


if __name__ == "__main__":
    sys.exit(main())

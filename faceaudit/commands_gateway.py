"""The ``faceaudit gateway`` subcommand: the HTTPS endpoint for devices, or admit a device.

The server is cheroot (TLS from the standard library's ssl module), its
certificate issued by the local broker's CA unless one is given.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn

from consumers.settings import Settings
from core.errors import FaceauditError
from faceaudit.home import home
from faceaudit.kafka_flags import add_kafka_flags, kafka_flags
from faceaudit.validator_flags import positive_int

if TYPE_CHECKING:
    from core.clients import KafkaConfig
    from producers.gateway.devices import DeviceTokens

DEVICES_FILE: Final = "gateway-devices.jsonl"
DEFAULT_PORT: Final = 8443
THREADS: Final = 16
CLIENT_TIMEOUT_SECONDS: Final = 10
"""How long a device may take to send its request: a slow one does not hold a thread longer."""


def add_gateway_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``faceaudit gateway``."""
    gate = commands.add_parser(
        "gateway",
        help="serve the HTTPS endpoint devices send their events to",
        description="Take devices' records over HTTPS (POST /v1/events: single-object "
        "encoded records, each after its length as 4 bytes, or JSON) and produce them to "
        "Kafka keyed by device, idempotently with acks=all; 202 only once the broker has "
        "every record of the request. Each device has a token of its own and may send only "
        "its own records. With --make-token, admit a device instead and exit.",
    )
    gate.add_argument("--bootstrap", help="Kafka bootstrap servers (FACEAUDIT_BOOTSTRAP)")
    add_kafka_flags(gate)
    gate.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    gate.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port ({DEFAULT_PORT})")
    gate.add_argument(
        "--devices",
        type=Path,
        metavar="FILE",
        help=f"device token file (default $FACEAUDIT_HOME/{DEVICES_FILE})",
    )
    gate.add_argument(
        "--cert-file",
        type=Path,
        metavar="PEM",
        help="the server's certificate (default: one issued by the local broker's CA)",
    )
    gate.add_argument("--key-file", type=Path, metavar="PEM", help="its private key")
    gate.add_argument(
        "--rate", type=float, default=20.0, help="requests per second per device (20)"
    )
    gate.add_argument(
        "--max-records", type=positive_int, default=1000, help="records per request (1000)"
    )
    admit = gate.add_argument_group("admitting a device", "prints its token once")
    admit.add_argument("--make-token", metavar="DEVICE_ID", help="admit the device and exit")
    admit.add_argument("--processor", metavar="ID", help="the device's processor")
    admit.add_argument("--replace", action="store_true", help="replace the device's token")
    gate.set_defaults(handler=_gateway)


def _gateway(args: argparse.Namespace) -> int:
    from producers.gateway.devices import DeviceTokens, add_device

    path = args.devices or home() / DEVICES_FILE
    if args.make_token is not None:
        if not args.processor:
            raise FaceauditError("--make-token DEVICE_ID needs --processor ID")
        print(add_device(path, args.make_token, args.processor, replace=args.replace))
        print(
            f"faceaudit: device {args.make_token!r} ({args.processor}) admitted in {path}; the "
            "token is shown only now",
            file=sys.stderr,
        )
        return 0
    devices = DeviceTokens(path)
    cert_file, key_file = _tls_files(args)
    kafka = Settings.resolve(
        {"bootstrap": args.bootstrap, **kafka_flags(args)}, role="producer"
    ).kafka
    return _serve(args, devices, kafka, cert_file, key_file, path)


def _serve(
    args: argparse.Namespace,
    devices: DeviceTokens,
    kafka: KafkaConfig,
    cert_file: Path,
    key_file: Path,
    path: Path,
) -> int:
    from cheroot import wsgi
    from cheroot.ssl.builtin import BuiltinSSLAdapter

    from producers.gateway.app import create_gateway_app
    from producers.gateway.limiter import RateLimiter
    from producers.gateway.relay import KafkaRelay

    relay = KafkaRelay(kafka)
    try:
        app = create_gateway_app(relay, devices, RateLimiter(args.rate, 2 * args.rate))
        server = wsgi.Server(
            (args.host, args.port), app, numthreads=THREADS, timeout=CLIENT_TIMEOUT_SECONDS
        )
        server.ssl_adapter = BuiltinSSLAdapter(str(cert_file), str(key_file))
        try:
            server.prepare()
        except OSError as exc:
            raise FaceauditError(f"cannot listen on {args.host}:{args.port}: {exc}") from None
        print(
            f"faceaudit gateway: serving https://{args.host}:{server.bind_addr[1]}/v1/events "
            f"into {kafka.bootstrap} ({len(devices)} device(s) from {path}; certificate "
            f"{cert_file}); Ctrl-C or SIGTERM stops it",
            file=sys.stderr,
            flush=True,
        )
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            server.serve()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    finally:
        relay.close()
    return 0


def _tls_files(args: argparse.Namespace) -> tuple[Path, Path]:
    """The given certificate and key, or the local CA's certificate for the gateway."""
    if (args.cert_file is None) != (args.key_file is None):
        raise FaceauditError("--cert-file and --key-file go together")
    if args.cert_file is not None:
        return args.cert_file, args.key_file
    from core.local_kafka import broker_home
    from core.private_files import private_dir
    from faceaudit.broker_security import BrokerSecurity, cert_is_current

    security = BrokerSecurity(broker_home() / "kafka")
    if not security.ca_key_file.exists():
        raise FaceauditError(
            "no local broker CA to issue the gateway's certificate "
            "(faceaudit broker start makes one); or give --cert-file and --key-file"
        )
    directory = broker_home() / "gateway"
    private_dir(directory)
    cert_file, key_file = directory / "gateway.pem", directory / "gateway.key"
    if not cert_is_current(cert_file, key_file):
        security.issue_server_cert("faceaudit-gateway", cert_file, key_file)
    return cert_file, key_file


def _interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt

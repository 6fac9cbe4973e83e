"""The local broker's security material: its CA and certificate, its SCRAM users, their ACLs.

Everything lives under the broker's ``kafka`` dir (mode 0700):

- ``tls/ca.pem`` (the CA every client trusts), ``tls/ca.key``, ``tls/broker.pem``
  and ``tls/broker.key``: PEM, made with `cryptography` on first start; the keys
  are 0600. The broker's certificate (CN=faceaudit-broker, for 127.0.0.1 and
  localhost) serves the clients' SASL_SSL listener and is also the client
  certificate the broker shows its own KRaft controller listener (TLS with
  required client auth: SCRAM credentials live in the metadata the controller
  serves, so they cannot authenticate it).
- ``users/NAME.password``: one random password per SCRAM-SHA-512 user, 0600.
- ``users.json``: each user's role, from which its ACLs follow.

Roles and what their ACLs allow (nothing else is allowed: the broker runs
StandardAuthorizer with ``allow.everyone.if.no.acl.found=false``):

- ``producer``: write (and describe) the event and registry topics;
- ``validator``: read those and the keys topic, in consumer groups named
  ``faceaudit-*`` (or with no group); write the violations, dead-letter and
  digests topics (and read the violations topic: what it already published);
- ``operator``: write the keys topic, the only one who may;
- ``reader``: read the violations, keys and digests topics (the findings and what
  verifies them), in groups named after the reader;
- ``admin``: a super user, like the broker's own principals.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourceType,
)

from core.local_kafka import ROLES
from core.private_files import private_dir, write_private
from producers.fleet import CATALOG
from schemas.topics import (
    DEAD_LETTER_TOPIC,
    DIGESTS_TOPIC,
    INPUT_TOPICS,
    KEYS_TOPIC,
    VIOLATION_TOPIC,
)

READER_TOPICS = (VIOLATION_TOPIC, KEYS_TOPIC, DIGESTS_TOPIC)
BROKER_USER = "broker"  # the broker reaching its own SASL_SSL listener (inter-broker)
BROKER_CN = "faceaudit-broker"
BROKER_CERT_PRINCIPAL = f"User:CN={BROKER_CN}"  # its controller client certificate
VALIDATOR_GROUPS = "faceaudit-"  # prefix of the consumer groups the validator may use
SCRAM = "SCRAM-SHA-512"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CA_DAYS = 3650
_CERT_DAYS = 825
_RENEW_BEFORE = dt.timedelta(days=30)


def fleet_producers() -> dict[str, str]:
    """One producer principal per processor of the simulated fleet.

    The fleet's processor ids carry its seed (``bank-03-s42``), but each kind
    of processor appears at most once per fleet: ``producer-bank`` is the
    principal of the bank of any simulated fleet. ``producer`` is the
    simulator's own, writing for the whole fleet.
    """
    return {"producer": "producer", **{f"producer-{kind}": "producer" for kind in CATALOG}}


def initial_users() -> dict[str, str]:
    """The users created at format time, name -> role."""
    return {
        "admin": "admin",
        BROKER_USER: "broker",
        "validator": "validator",
        "operator": "operator",
        **fleet_producers(),
    }


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"user name {name!r}: use letters, digits, '.', '_' or '-' (at most 64, "
            "starting with a letter or digit)"
        )
    return name


class BrokerSecurity:
    """The security files of one local broker's ``kafka`` dir."""

    def __init__(self, kafka_dir: Path) -> None:
        self.kafka_dir = kafka_dir
        self.tls_dir = kafka_dir / "tls"
        self.users_dir = kafka_dir / "users"
        self.ca_file = self.tls_dir / "ca.pem"
        self.ca_key_file = self.tls_dir / "ca.key"
        self.cert_file = self.tls_dir / "broker.pem"
        self.key_file = self.tls_dir / "broker.key"
        self.users_file = kafka_dir / "users.json"

    # ------------------------------------------------------------ material

    def ensure(self) -> None:
        """Make what is missing: private dirs, CA, broker certificate, initial users."""
        for path in (self.kafka_dir, self.tls_dir, self.users_dir):
            private_dir(path)
        if not (self.ca_file.exists() and self.ca_key_file.exists()):
            self._make_ca()
        if not self._cert_is_current():
            self._make_broker_cert()
        users = self.users()
        for name, role in initial_users().items():
            users.setdefault(name, role)
        for name in users:
            self.ensure_password(name)
        self._write_users(users)

    def ensure_password(self, name: str) -> Path:
        """The user's password file, made with a new random password if missing."""
        path = self.password_file(name)
        if not path.exists():
            write_private(path, secrets.token_urlsafe(24) + "\n")
        return path

    def password_file(self, name: str) -> Path:
        return self.users_dir / f"{check_name(name)}.password"

    def password(self, name: str) -> str:
        return self.password_file(name).read_text().strip()

    def users(self) -> dict[str, str]:
        """Every SCRAM user of the broker, name -> role."""
        try:
            return dict(json.loads(self.users_file.read_text()))
        except FileNotFoundError:
            return {}

    def add_user(self, name: str, role: str) -> Path:
        """Record a new user with a new password; its SCRAM credential and ACLs are the caller's."""
        check_name(name)
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
        users = self.users()
        if name in users:
            raise ValueError(f"user {name!r} exists already (role {users[name]})")
        path = self.ensure_password(name)
        users[name] = role
        self._write_users(users)
        return path

    def _write_users(self, users: dict[str, str]) -> None:
        temporary = self.users_file.with_name(self.users_file.name + ".tmp")
        temporary.write_text(json.dumps(users, indent=2, sort_keys=True) + "\n")
        temporary.replace(self.users_file)

    # --------------------------------------------------- broker's view of it

    def scram_arguments(self) -> list[str]:
        """`kafka-storage format` arguments creating every user's SCRAM credential."""
        arguments = []
        for name in self.users():
            arguments += ["--add-scram", f"{SCRAM}=[name={name},password={self.password(name)}]"]
        return arguments

    def template_values(self) -> dict[str, str]:
        """What the server.properties template needs (secrets: the file is 0600)."""
        chain = self.cert_file.read_text() + self.ca_file.read_text()
        return {
            "keystore_chain": _inline(chain),
            "keystore_key": _inline(self.key_file.read_text()),
            "ca_file": str(self.ca_file),
            "broker_user": BROKER_USER,
            "broker_password": self.password(BROKER_USER),
            "super_users": ";".join(("User:admin", f"User:{BROKER_USER}", BROKER_CERT_PRINCIPAL)),
        }

    def client_users(self) -> dict[str, tuple[str, Path]]:
        """Users a client of the broker may be (all but the broker's own), with password files."""
        return {
            name: (role, self.password_file(name))
            for name, role in self.users().items()
            if role != "broker"
        }

    # ------------------------------------------------------------- helpers

    def _make_ca(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "faceaudit local broker"),
                x509.NameAttribute(
                    NameOID.COMMON_NAME, f"faceaudit local CA {secrets.token_hex(4)}"
                ),
            ]
        )
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=_CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        write_private(self.ca_key_file, _key_pem(key))
        self.ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.ca_file.chmod(0o644)
        # A new CA invalidates the old broker certificate.
        self.cert_file.unlink(missing_ok=True)

    def _make_broker_cert(self) -> None:
        self.issue_server_cert(BROKER_CN, self.cert_file, self.key_file)

    def issue_server_cert(self, common_name: str, cert_file: Path, key_file: Path) -> None:
        """A certificate for 127.0.0.1 and localhost signed by this broker's CA (the
        broker's own, the device gateway's), its key readable by its owner alone."""
        ca_key = serialization.load_pem_private_key(self.ca_key_file.read_bytes(), None)
        ca = x509.load_pem_x509_certificate(self.ca_file.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=_CERT_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.DNSName("localhost"),
                    ]
                ),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()), False
            )
            .sign(ca_key, hashes.SHA256())
        )
        write_private(key_file, _key_pem(key))
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def _cert_is_current(self) -> bool:
        return cert_is_current(self.cert_file, self.key_file)


def cert_is_current(cert_file: Path, key_file: Path) -> bool:
    """Both files exist and the certificate is not about to expire."""
    if not (cert_file.exists() and key_file.exists()):
        return False
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return cert.not_valid_after_utc - _now() > _RENEW_BEFORE


# ----------------------------------------------------------------- ACLs


def acls_for(name: str, role: str) -> list[ACL]:
    """The ACLs that give user `name` its role (none for the super users)."""
    principal = f"User:{name}"
    topic = ResourceType.TOPIC
    group = ResourceType.GROUP
    read, write, describe = ACLOperation.READ, ACLOperation.WRITE, ACLOperation.DESCRIBE
    if role == "producer":
        return _allow(principal, topic, INPUT_TOPICS, (write, describe))
    if role == "validator":
        return [
            *_allow(principal, topic, (*INPUT_TOPICS, KEYS_TOPIC), (read, describe)),
            *_allow(principal, topic, (DEAD_LETTER_TOPIC, DIGESTS_TOPIC), (write, describe)),
            *_allow(principal, topic, (VIOLATION_TOPIC,), (write, read, describe)),
            *_allow(principal, group, (VALIDATOR_GROUPS,), (read, describe), prefixed=True),
        ]
    if role == "operator":
        return _allow(principal, topic, (KEYS_TOPIC,), (write, read, describe))
    if role == "reader":  # a regulator's tools: the findings, and what verifies them
        return [
            *_allow(
                principal, topic, (VIOLATION_TOPIC, KEYS_TOPIC, DIGESTS_TOPIC), (read, describe)
            ),
            *_allow(principal, group, (name,), (read, describe), prefixed=True),
        ]
    return []


def _allow(
    principal: str,
    resource: ResourceType,
    names: Iterable[str],
    operations: Iterable[ACLOperation],
    prefixed: bool = False,
) -> list[ACL]:
    pattern = ACLResourcePatternType.PREFIXED if prefixed else ACLResourcePatternType.LITERAL
    return [
        ACL(
            principal=principal,
            host="*",
            operation=operation,
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(resource, name, pattern),
        )
        for name in names
        for operation in operations
    ]


# --------------------------------------------------------------- files


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _inline(pem: str) -> str:
    """PEM text as one properties value: java.util.Properties reads `\\n` as a newline."""
    return pem.strip().replace("\n", "\\n")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)

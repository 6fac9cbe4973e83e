"""The local broker's credentials, found by the commands that talk to it.

`faceaudit broker start` writes ``kafka/client.json`` under its state dir:
the bootstrap address, the CA that signed the broker's certificate and,
per SCRAM user, its role and the owner-only file holding its password.
A command given no bootstrap (or the local broker's own) and no credentials
takes them from there, as the user of its role, so the demo and the tests
need no setup. The file holds paths, never a password.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from core.clients import KafkaConfig, read_password_file
from core.errors import FaceauditError

CLIENT_FILE = Path("kafka") / "client.json"
# What a user of the local broker may be (faceaudit/broker_security.py gives each its ACLs).
ROLES = ("producer", "validator", "operator", "reader", "admin")
# The user each kind of command is, on the local broker.
ROLE_USERS: dict[str, str] = {
    "admin": "admin",
    "validator": "validator",
    "producer": "producer",
    "operator": "operator",
}


@dataclass(frozen=True, slots=True)
class LocalCredentials:
    """How a user reaches the local broker: its address, CA, name and password file."""

    bootstrap: str
    ca_file: str
    user: str
    password_file: str


def broker_home(environ: Mapping[str, str] | None = None) -> Path:
    """FACEAUDIT_BROKER_HOME, else FACEAUDIT_HOME, else .faceaudit: where the broker's state is."""
    environ = os.environ if environ is None else environ
    return Path(
        environ.get("FACEAUDIT_BROKER_HOME") or environ.get("FACEAUDIT_HOME") or ".faceaudit"
    )


def write_client_file(
    home: Path, bootstrap: str, ca_file: Path, users: Mapping[str, tuple[str, Path]]
) -> None:
    """Describe a local broker (users: name -> (role, password file)) for its clients."""
    description = {
        "bootstrap": bootstrap,
        "ca_file": str(ca_file),
        "users": {
            name: {"role": role, "password_file": str(path)} for name, (role, path) in users.items()
        },
    }
    path = home / CLIENT_FILE
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(description, indent=2) + "\n")
    temporary.replace(path)


def local_credentials(
    role: str, environ: Mapping[str, str] | None = None, user: str | None = None
) -> LocalCredentials | None:
    """The local broker's credentials for `role`'s user (or `user`), None if there is no broker."""
    path = broker_home(environ) / CLIENT_FILE
    try:
        description = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise FaceauditError(f"cannot read the local broker's description {path}: {exc}") from None
    name = user or ROLE_USERS.get(role)
    entry = description.get("users", {}).get(name) if name else None
    if entry is None:
        raise FaceauditError(f"the local broker ({path}) has no user {name or role!r}")
    return LocalCredentials(
        bootstrap=description["bootstrap"],
        ca_file=description["ca_file"],
        user=name,
        password_file=entry["password_file"],
    )


def local_kafka(
    role: str,
    timeout: float = 15.0,
    environ: Mapping[str, str] | None = None,
    user: str | None = None,
) -> KafkaConfig | None:
    """A KafkaConfig for the local broker as `role`'s user (or `user`); None without a broker."""
    found = local_credentials(role, environ, user)
    if found is None:
        return None
    return KafkaConfig(
        found.bootstrap,
        timeout,
        user=found.user,
        password=read_password_file(found.password_file),
        ca_file=found.ca_file,
    )

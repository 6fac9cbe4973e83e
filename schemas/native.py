"""The native batch decoder (``faceaudit_native``, built from ``native/``) set up for the contract.

It decodes a whole batch of wire messages into one Arrow record batch per
kind, with the verdicts ``codec.decode`` gives message by message.
"""

from __future__ import annotations

from importlib.resources import files

import faceaudit_native

from schemas.codec import NON_NEGATIVE, REGION_CODES
from schemas.regions import PROVINCES
from schemas.topics import KINDS, OUTPUT_KINDS


def contract_decoder() -> faceaudit_native.Decoder:
    """A decoder for every kind the codec knows, with the codec's checks of values."""
    schemas = {
        kind: (files("schemas") / "avro" / f"{kind}.avsc").read_text(encoding="utf-8")
        for kind in (*KINDS, *OUTPUT_KINDS)
    }
    return faceaudit_native.Decoder(schemas, NON_NEGATIVE, REGION_CODES, list(PROVINCES))

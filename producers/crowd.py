"""A hotel chain with no filing whose check-ins cross the filing threshold (FR-FILING).

Every check-in is compliant (statutory identity verification at a hotel
desk), and every guest is new: after `threshold` of them the chain has
processed more people's face data than it may without a filing, and the
event that brings it there is the finding. Its deployments are registered,
none with a filing id.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from producers.fleet import DISTRICTS, Record
from producers.subject import subject_ref


class HotelChain:
    def __init__(self, seed: int, start: datetime, devices: int = 12) -> None:
        self._rng = random.Random(f"{seed}-hotel-chain")
        self.processor_id = f"hotelchain-s{seed}"
        self._key = self._rng.randbytes(32)
        self._start = start
        self._guests = 0
        regions = self._rng.sample(sorted(DISTRICTS), 3)
        self._deployments = [
            (f"{self.processor_id}-d{n}", region) for n, region in enumerate(regions, start=1)
        ]
        self._devices = [
            (f"cam-hc-s{seed}-{region}-{index:03d}", deployment_id, region)
            for index in range(devices)
            for deployment_id, region in [self._deployments[index % len(self._deployments)]]
        ]

    def registry_records(self) -> list[tuple[str, Record]]:
        """The chain's deployments: registered, assessed, noticed, never filed."""
        return [
            (
                "deployment",
                {
                    "deployment_id": deployment_id,
                    "processor_id": self.processor_id,
                    "registered_purposes": ["identity_verification"],
                    "declared_retention_days": 30,
                    "pipia_date": self._start - timedelta(days=120),
                    "notice_version": f"{self.processor_id}-notice-v1",
                    "notice_complete": True,
                    "law_requires_written_consent": False,
                    "filing_id": None,
                    "filing_date": None,
                },
            )
            for deployment_id, _ in self._deployments
        ]

    def check_in(self, event_time: datetime) -> tuple[str, Record]:
        """The next guest's check-in capture at one of the chain's desks."""
        rng = self._rng
        device_id, deployment_id, region = rng.choice(self._devices)
        self._guests += 1
        guest = subject_ref(self._key, f"{self.processor_id}/guest/{self._guests:07d}")
        record: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "event_time": event_time,
            "processor_id": self.processor_id,
            "deployment_id": deployment_id,
            "device_id": device_id,
            "region_code": region,
            "location_type": "hotel_lobby",
            "public_place": False,
            "remote_noncontact": False,
            "purpose": "identity_verification",
            "legal_basis": "statutory",
            "subject_ref": guest,
            "consent_id": None,
            "subject_age": rng.randint(18, 75),
            "signage_present": True,
            "capture_zone_approved": True,
            "attribute_analysis": [],
            "raw_image_retained": False,
            "anonymized": False,
            "retention_days": 30,
            "storage_location": "local_server",
            "transmitted_off_device": True,
            "transmission_channel": "private_network",
            "encrypted_at_rest": True,
            "encrypted_in_transit": True,
        }
        return "capture", record

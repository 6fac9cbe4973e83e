"""A deterministic, realistic fleet of face-recognition devices, for demos, tests and load.

The fleet is a small world built once from a seed: processors (organisations),
their registered deployments, sites in a few Chinese districts, devices, and
the subjects who consented.  From it come the registry records
(:meth:`Fleet.registry_records`) and a stream of capture and match events
(:meth:`Fleet.events`), each paired with the rule ids it was built to break.

Why the care about compliance: the simulator is the ground truth the audit side
is tested against.  An event labelled compliant obeys every per-event rule of
rules.md in both profiles, and a faulty one breaks exactly the rule it names,
so a pipeline's findings can be compared one for one with the intended ones.
The world is shaped to make that possible without special cases:

- compliant events never use internet transfer, cloud storage, raw-image
  retention or sensitive attributes, and 1:1 checks always have an
  alternative offered; so their consent only matters through the legal basis
  and the public-place rule;
- consents cover their processor's registered purposes plus one purpose no
  deployment registered, so a FR-PURPOSE-REGISTERED fault keeps a valid consent;
- consent faults (missing, withdrawn) only happen on non-public, non-remote
  devices, where a missing consent breaks nothing but the consent rule;
- FR-PRIVATE-SPACE and REG-UNKNOWN-DEPLOYMENT come from dedicated devices (a
  camera sited in a private space, a deployment never registered), so every
  device keeps a stable processor, deployment, site and region;
- withdrawn consents were withdrawn weeks before the events and their face
  data deleted within the deletion window, so FR-DELETION-OVERDUE stays quiet;
- every processor has a filing, so FR-FILING stays quiet at any volume.

Same arguments give the same world and the same events; ``start`` (default:
now) only shifts the timestamps, so ids, devices, subjects and faults depend on
the seed alone and a run can be regenerated later to check what it sent.  The
flip side: two runs of one seed reuse event ids and restart every device chain,
so runs into the same pipeline should use different seeds.
No event carries a name or an image: subjects are HMAC references
(:func:`producers.subject.subject_ref`).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from producers.subject import subject_ref

Record = dict[str, Any]

PRIVATE_SPACE: Final = "FR-PRIVATE-SPACE"
CONSENT_MISSING: Final = "FR-CONSENT-MISSING"
CONSENT_WITHDRAWN: Final = "FR-CONSENT-WITHDRAWN"
UNKNOWN_DEPLOYMENT: Final = "REG-UNKNOWN-DEPLOYMENT"
PUBLIC_SIGNAGE: Final = "FR-PUBLIC-SIGNAGE"
PURPOSE_REGISTERED: Final = "FR-PURPOSE-REGISTERED"
RAW_IDENTIFIER: Final = "AUDIT-RAW-IDENTIFIER"
FAULTS: Final = (
    PRIVATE_SPACE,
    CONSENT_MISSING,
    CONSENT_WITHDRAWN,
    UNKNOWN_DEPLOYMENT,
    PUBLIC_SIGNAGE,
    PURPOSE_REGISTERED,
    RAW_IDENTIFIER,
)
"""The rules the fleet can break on purpose, one per faulty event."""

SEQUENCE_GAP: Final = "AUDIT-SEQ-GAP"
CHECKPOINT_MISMATCH: Final = "AUDIT-CHECKPOINT-MISMATCH"
"""At ``tamper_rate``: after an event, its device signs a checkpoint of another head, as
if the event had been altered after the device vouched for it (``producers.simulate``)."""
CLOCK_SKEW: Final = "AUDIT-CLOCK-SKEW"
"""At ``skew_rate``: an event dated ``SKEW`` ahead of the fleet's clock, as by a device whose
clock jumped; the audit compares it with the broker's time of arrival."""
SKEW: Final = timedelta(hours=1)
UNCHECKPOINTED: Final = "AUDIT-UNCHECKPOINTED"
"""A device that stops signing checkpoints (``producers.stops_signing``)."""
FORGED_CONSENT: Final = "REG-UNSIGNED-RECORD"
CONSENT_REWRITE: Final = "REG-CONSENT-REWRITTEN"
"""Also on purpose, at ``gap_rate``: an event lost before it reached Kafka, so the
device's next event follows a gap in its sequence (the simulator skips the number)."""

# 6-digit administrative division codes (GB/T 2260) of the districts sites are in.
DISTRICTS: Final[dict[str, str]] = {
    "310104": "Shanghai Xuhui",
    "310115": "Shanghai Pudong",
    "110105": "Beijing Chaoyang",
    "110108": "Beijing Haidian",
    "440305": "Shenzhen Nanshan",
    "440304": "Shenzhen Futian",
    "330106": "Hangzhou Xihu",
    "510107": "Chengdu Wuhou",
    "420106": "Wuhan Wuchang",
}
PRIVATE_LOCATIONS: Final = ("hotel_room", "public_bath", "changing_room", "toilet")

MATCH_FOLLOWS_CAPTURE: Final = 0.8
"""Share of compliant captures followed by a match on the same device (the rest: detection only)."""
FAULTY_CAPTURE_SHARE: Final = 1 / (1 + MATCH_FOLLOWS_CAPTURE)
"""Faulty events keep the compliant stream's capture:match mix."""

# Purposes a consent may add beyond its processor's deployments (never exempt or high-stakes).
_UNREGISTERED_EXTRAS: Final = (
    "access_control",
    "attendance",
    "identity_verification",
    "payment",
    "marketing",
    "customer_analytics",
)
_STEP_MICROS: Final = (500, 5_000)  # event_time advances 0.5-5 ms per event
MEAN_STEP: Final = timedelta(microseconds=sum(_STEP_MICROS) / 2)
"""How far event time advances per event on average (unless paced: ``events_per_second``)."""


@dataclass(frozen=True)
class Template:
    """One way of using face recognition; every value keeps its events compliant."""

    name: str
    locations: tuple[str, ...]
    public_place: bool
    purposes: tuple[str, ...]
    legal_basis: str
    match_mode: str
    remote_noncontact: bool
    retention_days: int
    storage_location: str
    transmitted: bool  # over a private network, encrypted
    written_consent: bool
    gallery_size: tuple[int, int]
    threshold: float
    match_rate: float
    attributes: tuple[tuple[str, ...], ...] = ((),)

    @property
    def consent_based(self) -> bool:
        return self.legal_basis == "consent"

    @property
    def watchlist(self) -> bool:
        """A 1:N search of a watch list: nobody is known at capture, an operator runs it."""
        return self.legal_basis == "public_security"


def _security(name: str, locations: tuple[str, ...]) -> Template:
    return Template(
        name=name,
        locations=locations,
        public_place=True,
        purposes=("public_security",),
        legal_basis="public_security",
        match_mode="identify_1toN",
        remote_noncontact=True,
        retention_days=90,
        storage_location="local_server",
        transmitted=True,
        written_consent=False,
        gallery_size=(5_000, 50_000),
        threshold=0.88,
        match_rate=0.03,
        attributes=((), ("age", "gender")),
    )


def _checkpoint(
    name: str,
    location: str,
    purposes: tuple[str, ...],
    *,
    public_place: bool,
    legal_basis: str = "consent",
    match_mode: str = "verify_1to1",
    retention_days: int = 30,
    written_consent: bool = False,
    storage_location: str = "device",
) -> Template:
    """A point where people present their face on purpose (gate, counter, till)."""
    return Template(
        name=name,
        locations=(location,),
        public_place=public_place,
        purposes=purposes,
        legal_basis=legal_basis,
        match_mode=match_mode,
        remote_noncontact=False,
        retention_days=retention_days,
        storage_location=storage_location,
        transmitted=storage_location != "device",
        written_consent=written_consent,
        gallery_size=(50, 3_000),
        threshold=0.8,
        match_rate=0.96,
    )


CATALOG: Final[dict[str, tuple[Template, ...]]] = {
    "security": (
        _security("metro_security", ("transport_hub",)),
        _security("street_security", ("public_street", "other_public")),
    ),
    "property": (
        _checkpoint(
            "residential_gate",
            "residential_access",
            ("access_control",),
            public_place=False,
            match_mode="identify_1toN",
        ),
        _checkpoint(
            "office_access",
            "workplace",
            ("access_control", "attendance"),
            public_place=False,
            storage_location="local_server",
        ),
    ),
    "bank": (
        _checkpoint(
            "bank_branch",
            "bank",
            ("identity_verification", "payment"),
            public_place=True,
            retention_days=180,
            written_consent=True,
            storage_location="local_server",
        ),
    ),
    "hotel": (
        _checkpoint(
            "hotel_checkin",
            "hotel_lobby",
            ("identity_verification",),
            public_place=False,
            legal_basis="statutory",
            storage_location="local_server",
        ),
    ),
    "retail": (_checkpoint("retail_payment", "retail", ("payment",), public_place=True),),
    "venue": (
        _checkpoint(
            "venue_entry", "venue", ("access_control",), public_place=True, retention_days=7
        ),
    ),
}
"""Deployment templates per processor kind; a processor's deployments draw from its kind."""
_ALWAYS: Final = ("security", "property")  # a public device and a consent-only device always exist


@dataclass(frozen=True)
class Subject:
    """A pseudonymous person known to one processor, with the consent relied on (if any)."""

    ref: str
    age: int
    consent_id: str | None


@dataclass
class Processor:
    """An organisation running face recognition, with its subjects and consent terms."""

    processor_id: str
    kind: str
    key: bytes
    notice_version: str
    templates: list[Template] = field(default_factory=list)
    subjects: list[Subject] = field(default_factory=list)
    withdrawn: list[Subject] = field(default_factory=list)
    consent_purposes: tuple[str, ...] = ()

    @property
    def needs_consent(self) -> bool:
        return any(template.consent_based for template in self.templates)

    @property
    def written_consent(self) -> bool:
        return any(template.written_consent for template in self.templates)


@dataclass(frozen=True)
class Deployment:
    """A deployment of one template by one processor in one district."""

    deployment_id: str
    processor: Processor
    template: Template
    region_code: str
    gallery_id: str
    gallery_size: int
    filed: bool
    registered: bool = True


@dataclass(frozen=True)
class Device:
    """A camera: stable processor, deployment, site location and region.

    ``role`` is ``regular`` (compliant events and most faults), ``private``
    (sited in a private space) or ``unregistered`` (its deployment was never
    registered); the last two only emit the fault they exist for.
    """

    device_id: str
    deployment: Deployment
    location_type: str
    public_place: bool
    role: str = "regular"

    @property
    def template(self) -> Template:
        return self.deployment.template

    @property
    def processor(self) -> Processor:
        return self.deployment.processor


@dataclass(frozen=True)
class Encounter:
    """What a capture and the match that follows it share: why, and who (if known)."""

    purpose: str
    subject: Subject | None


class Fleet:
    """The world of one seed: registry records first, then an endless event stream."""

    def __init__(
        self,
        devices: int,
        seed: int,
        violation_rate: float,
        start: datetime | None = None,
        gap_rate: float = 0.0,
        tamper_rate: float = 0.0,
        skew_rate: float = 0.0,
        events_per_second: float | None = None,
    ) -> None:
        """Build the world; ``start`` (aware; default now) is when the events begin.

        ``gap_rate``: the share of events that come after a lost one
        (SEQUENCE_GAP), drawn apart from the rest, so a fleet with gaps sends
        the same events as the one without. ``tamper_rate`` and ``skew_rate``,
        alike: the share of events whose device then vouches for another head
        (CHECKPOINT_MISMATCH), and of events dated ahead (CLOCK_SKEW).
        ``events_per_second`` paces event time (default: ``MEAN_STEP`` per
        event), so a fleet sent at that rate keeps time with the wall clock.
        """
        if devices < 1:
            raise ValueError(f"a fleet needs at least one device, got {devices}")
        if not 0.0 <= violation_rate <= 1.0:
            raise ValueError(f"violation_rate must be within [0, 1], got {violation_rate}")
        rates = (("gap_rate", gap_rate), ("tamper_rate", tamper_rate), ("skew_rate", skew_rate))
        for name, rate in rates:
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {rate}")
        if start is not None and start.utcoffset() is None:
            raise ValueError("start must be timezone-aware")
        if events_per_second is not None and events_per_second <= 0:
            raise ValueError(f"events_per_second must be positive, got {events_per_second}")
        self.violation_rate = violation_rate
        self.gap_rate = gap_rate
        self._gaps = random.Random(f"{seed}-gaps")
        self.tamper_rate = tamper_rate
        self._tampers = random.Random(f"{seed}-tampers")
        self.skew_rate = skew_rate
        self._skews = random.Random(f"{seed}-skews")
        mean = MEAN_STEP.total_seconds()
        self._pace = 1.0 if events_per_second is None else 1 / (events_per_second * mean)
        self._emitted: set[str] = set()  # devices that sent an event: only they can lose one
        self.start = (start or datetime.now(UTC)).astimezone(UTC)
        # Ids carry the seed: fleets of different seeds streamed into one
        # pipeline never share a device, processor or deployment.
        self._tag = f"s{seed}"
        self._rng = random.Random(seed)
        self._clock = self.start
        self._pending: dict[str, tuple[Encounter, str]] = {}
        self.processors = self._processors(devices)
        self.deployments = self._deployments()
        self.devices = self._devices(devices)
        self._regular = [device for device in self.devices if device.role == "regular"]
        self._eligible = self._eligible_devices()
        self._registry = self._registry_records()

    # ------------------------------------------------------------- public API

    def registry_records(self) -> list[tuple[str, Record]]:
        """Deployments, consent grants, withdrawals, then deletions: send before any event."""
        return [(kind, dict(record)) for kind, record in self._registry]

    def events(self, n: int) -> Iterator[tuple[str, Record, list[str]]]:
        """The next ``n`` events as ``(kind, record, intended rule ids)``.

        An event whose rule ids include SEQUENCE_GAP is to be sent after its
        device's sequence skips a number (see ``producers.simulate``).

        Records lack ``device_seq`` and ``prev_hash``: the EventProducer sets them.
        Successive calls continue one stream (clock and pending captures).
        A fault is only chosen if the fleet has a device for it: private-space
        and unregistered devices exist from 10 devices on.
        """
        faults = [rule for rule in FAULTS if self._eligible[rule]]
        for _ in range(n):
            self._clock += timedelta(microseconds=self._rng.randint(*_STEP_MICROS) * self._pace)
            if faults and self._rng.random() < self.violation_rate:
                rule = self._rng.choice(faults)
                kind, record = self._faulty(rule)
                broken = [rule]
            else:
                kind, record = self._compliant(self._rng.choice(self._regular))
                broken = []
            if self.gap_rate and self._lost_before(record["device_id"]):
                broken.append(SEQUENCE_GAP)
            if self.tamper_rate and self._tampers.random() < self.tamper_rate:
                broken.append(CHECKPOINT_MISMATCH)
            if self.skew_rate and self._skews.random() < self.skew_rate:
                record["event_time"] += SKEW
                broken.append(CLOCK_SKEW)
            self._emitted.add(record["device_id"])
            yield kind, record, broken

    def consent_event(self, kind: str) -> Record:
        """A compliant capture, or a match with no recorded capture, of a consent-based
        device in a non-public place: what `producers.history` changes to break a rule."""
        device = self._rng.choice(self._eligible[CONSENT_MISSING])
        encounter = self._encounter(device)
        if kind == "capture":
            return self._capture(device, encounter)
        return self._match(device, encounter, None)

    def _lost_before(self, device_id: str) -> bool:
        """Whether the event the device sent before this one is to be lost.

        A device's very first event cannot follow a gap: the audit side takes
        a device it has not seen from wherever it starts.
        """
        return device_id in self._emitted and self._gaps.random() < self.gap_rate

    # ------------------------------------------------------ building the world

    def _processors(self, devices: int) -> list[Processor]:
        rng = self._rng
        others = [kind for kind in CATALOG if kind not in _ALWAYS]
        kinds = [*_ALWAYS, *rng.sample(others, rng.randint(1, len(others)))]
        pool = min(5_000, max(50, devices * 10))
        processors = []
        for index, kind in enumerate(kinds, start=1):
            processor_id = f"{kind}-{index:02d}-{self._tag}"
            processor = Processor(
                processor_id=processor_id,
                kind=kind,
                key=rng.randbytes(32),
                notice_version=f"{processor_id}-notice-v{rng.randint(1, 4)}",
                templates=[rng.choice(CATALOG[kind]) for _ in range(rng.randint(1, 3))],
            )
            self._add_subjects(processor, pool)
            processors.append(processor)
        return processors

    def _add_subjects(self, processor: Processor, pool: int) -> None:
        """Subjects, each with a consent if the processor relies on consent; a few withdrew."""
        rng = self._rng
        refs = [
            subject_ref(processor.key, f"{processor.processor_id}/member/{n:06d}")
            for n in range(pool)
        ]
        if not processor.needs_consent:
            processor.subjects = [Subject(ref, rng.randint(16, 75), None) for ref in refs]
            return
        registered = {p for t in processor.templates if t.consent_based for p in t.purposes}
        extra = rng.choice([p for p in _UNREGISTERED_EXTRAS if p not in registered])
        processor.consent_purposes = tuple(sorted(registered | {extra}))
        subjects = [Subject(ref, rng.randint(16, 75), self._uuid("cns")) for ref in refs]
        withdrawn = max(1, pool // 20)
        processor.withdrawn, processor.subjects = subjects[:withdrawn], subjects[withdrawn:]

    def _deployments(self) -> list[Deployment]:
        """Each processor's deployments; its first always has a filing (FR-FILING)."""
        return [
            self._deployment(processor, template, f"d{number}", filed=number == 1)
            for processor in self.processors
            for number, template in enumerate(processor.templates, start=1)
        ]

    def _deployment(
        self,
        processor: Processor,
        template: Template,
        suffix: str,
        *,
        filed: bool = False,
        registered: bool = True,
    ) -> Deployment:
        deployment_id = f"{processor.processor_id}-{suffix}"
        gallery = "watchlist" if template.watchlist else "enrolled"
        return Deployment(
            deployment_id=deployment_id,
            processor=processor,
            template=template,
            region_code=self._rng.choice(list(DISTRICTS)),
            gallery_id=f"{deployment_id}-{gallery}",
            gallery_size=self._rng.randint(*template.gallery_size),
            filed=filed or self._rng.random() < 0.8,
            registered=registered,
        )

    def _devices(self, count: int) -> list[Device]:
        """Regular devices cover every deployment first, led by a public and a consent one.

        From 10 devices on, a few are special: sited in a private space, or
        belonging to a deployment that was never registered.
        """
        rng = self._rng
        special = 0 if count < 10 else max(1, count // 50)
        lead = [self._first_deployment(kind) for kind in _ALWAYS]
        rest = [deployment for deployment in self.deployments if deployment not in lead]
        order = lead + rng.sample(rest, len(rest))
        plan: list[tuple[Deployment, str, bool, str]] = []
        for index in range(count - 2 * special):
            deployment = order[index] if index < len(order) else rng.choice(order)
            template = deployment.template
            plan.append(
                (deployment, rng.choice(template.locations), template.public_place, "regular")
            )
        for _ in range(special):
            plan.append(
                (rng.choice(self.deployments), rng.choice(PRIVATE_LOCATIONS), False, "private")
            )
        for number in range(1, special + 1):
            model = rng.choice(self.deployments)
            shadow = self._deployment(
                model.processor, model.template, f"x{number}", registered=False
            )
            template = shadow.template
            plan.append(
                (shadow, rng.choice(template.locations), template.public_place, "unregistered")
            )
        return [
            Device(
                f"cam-{self._tag}-{deployment.region_code}-{index:05d}",
                deployment,
                location,
                public,
                role,
            )
            for index, (deployment, location, public, role) in enumerate(plan)
        ]

    def _first_deployment(self, kind: str) -> Deployment:
        return next(d for d in self.deployments if d.processor.kind == kind)

    def _eligible_devices(self) -> dict[str, list[Device]]:
        """The devices on which each fault breaks its rule and nothing else.

        A missing or withdrawn consent also voids the consent that the
        public-place and remote-identification rules look for, so those faults
        need a device that is neither public nor remote.
        """
        consent_only = [
            device
            for device in self._regular
            if device.template.consent_based
            and not device.public_place
            and not device.template.remote_noncontact
        ]
        return {
            RAW_IDENTIFIER: list(self._regular),  # a match whose operator_id is a phone number
            PRIVATE_SPACE: [device for device in self.devices if device.role == "private"],
            UNKNOWN_DEPLOYMENT: [
                device for device in self.devices if device.role == "unregistered"
            ],
            PUBLIC_SIGNAGE: [device for device in self._regular if device.public_place],
            CONSENT_MISSING: consent_only,
            CONSENT_WITHDRAWN: [device for device in consent_only if device.processor.withdrawn],
            PURPOSE_REGISTERED: [
                device for device in self._regular if device.template.consent_based
            ],
        }

    # ------------------------------------------------------------ registry

    def registry_faults(self) -> list[tuple[str, Record, str]]:
        """Registry records that break a trust rule, each with the rule, to send after
        the registry: a consent in one processor's name that another processor signs
        (FORGED_CONSENT; `producers.simulate` signs it so), and a withdrawn consent
        sent again as never withdrawn (CONSENT_REWRITE). None if the fleet has no
        two processors or no withdrawal."""
        consents = [record for kind, record in self._registry if kind == "consent"]
        withdrawals = [record for record in consents if record["withdrawn_at"] is not None]
        if len(self.processors) < 2 or not withdrawals:
            return []
        grant = next(record for record in consents if record["withdrawn_at"] is None)
        forged = {**grant, "consent_id": f"{grant['consent_id']}-forged"}
        unwithdrawn = {**withdrawals[0], "withdrawn_at": None}
        return [("consent", forged, FORGED_CONSENT), ("consent", unwithdrawn, CONSENT_REWRITE)]

    def _registry_records(self) -> list[tuple[str, Record]]:
        deployments = [("deployment", self._deployment_record(d)) for d in self.deployments]
        grants: list[tuple[str, Record]] = []
        withdrawals: list[tuple[str, Record]] = []
        deletions: list[tuple[str, Record]] = []
        for processor in self.processors:
            for subject in processor.subjects:
                if subject.consent_id is not None:
                    grants.append(("consent", self._consent_record(processor, subject, (1, 400))))
            for subject in processor.withdrawn:
                grant = self._consent_record(processor, subject, (200, 400))
                withdrawn_at = self.start - self._days_ago(20, 90)
                grants.append(("consent", grant))
                withdrawals.append(("consent", {**grant, "withdrawn_at": withdrawn_at}))
                deletions.append(
                    ("deletion", self._deletion_record(processor, subject, withdrawn_at))
                )
        return deployments + grants + withdrawals + deletions

    def _deployment_record(self, deployment: Deployment) -> Record:
        processor, template = deployment.processor, deployment.template
        pipia = self.start - self._days_ago(60, 500)
        filing_date = pipia + timedelta(days=self._rng.randint(5, 40))
        filing_id = (
            f"CAC-FR-{deployment.region_code}-{filing_date.year}-{self._rng.randrange(10**6):06d}"
        )
        return {
            "deployment_id": deployment.deployment_id,
            "processor_id": processor.processor_id,
            "registered_purposes": list(template.purposes),
            "declared_retention_days": template.retention_days,
            "pipia_date": pipia,
            "notice_version": processor.notice_version,
            "notice_complete": True,
            "law_requires_written_consent": template.written_consent,
            "filing_id": filing_id if deployment.filed else None,
            "filing_date": filing_date if deployment.filed else None,
        }

    def _consent_record(
        self, processor: Processor, subject: Subject, granted_days_ago: tuple[int, int]
    ) -> Record:
        """A valid consent: right type, every purpose the processor uses, its current notice."""
        rng = self._rng
        written = processor.written_consent or rng.random() < 0.5
        expires = (
            None if rng.random() < 0.5 else self.start + timedelta(days=rng.randint(365, 1095))
        )
        return {
            "consent_id": subject.consent_id,
            "processor_id": processor.processor_id,
            "subject_ref": subject.ref,
            "grantor": "self",
            "consent_type": "written" if written else "separate",
            "purposes": list(processor.consent_purposes),
            "covers_internet_transfer": False,
            "covers_image_retention": False,
            "notice_version": processor.notice_version,
            "granted_at": self.start - self._days_ago(*granted_days_ago),
            "expires_at": expires,
            "withdrawn_at": None,
        }

    def _deletion_record(
        self, processor: Processor, subject: Subject, withdrawn_at: datetime
    ) -> Record:
        """Face data deleted a few days after withdrawal, inside the 15-day window."""
        return {
            "event_id": self._uuid(),
            "processor_id": processor.processor_id,
            "subject_ref": subject.ref,
            "deleted_at": withdrawn_at + timedelta(days=self._rng.randint(1, 10)),
            "reason": "consent_withdrawn",
        }

    # -------------------------------------------------------------- events

    def _compliant(self, device: Device) -> tuple[str, Record]:
        """A match for the device's pending capture, else a new capture (often to be matched)."""
        pending = self._pending.pop(device.device_id, None)
        if pending is not None:
            encounter, capture_id = pending
            return "match", self._match(device, encounter, capture_id)
        encounter = self._encounter(device)
        record = self._capture(device, encounter)
        if self._rng.random() < MATCH_FOLLOWS_CAPTURE:
            self._pending[device.device_id] = (encounter, record["event_id"])
        return "capture", record

    def _faulty(self, rule: str) -> tuple[str, Record]:
        """A capture, or a match with no recorded capture, breaking exactly ``rule``."""
        rng = self._rng
        device = rng.choice(self._eligible[rule])
        encounter = self._encounter(device)
        if rule == CONSENT_WITHDRAWN:
            encounter = Encounter(encounter.purpose, rng.choice(device.processor.withdrawn))
        elif rule == PURPOSE_REGISTERED:
            consented = device.processor.consent_purposes
            unregistered = [p for p in consented if p not in device.template.purposes]
            encounter = Encounter(rng.choice(unregistered), encounter.subject)
        if rule != RAW_IDENTIFIER and (
            rule == PUBLIC_SIGNAGE or rng.random() < FAULTY_CAPTURE_SHARE
        ):
            kind, record = "capture", self._capture(device, encounter)
        else:
            kind, record = "match", self._match(device, encounter, None)
        if rule == PUBLIC_SIGNAGE:
            record["signage_present"] = False
        elif rule == CONSENT_MISSING:
            record["consent_id"] = rng.choice((None, self._uuid("cns")))
        elif rule == RAW_IDENTIFIER and record["subject_ref"] and not device.template.consent_based:
            # A resident identity number instead of the subject's pseudonym; only where no
            # consent names the subject, so that nothing else is broken.
            record["subject_ref"] = resident_id(device.deployment.region_code, rng)
        elif rule == RAW_IDENTIFIER:  # the operator's mobile number instead of a pseudonym
            record["operator_id"] = f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"
        return kind, record

    def _encounter(self, device: Device) -> Encounter:
        """A watch-list camera does not know who passes; a checkpoint knows who presents."""
        purpose = self._rng.choice(device.template.purposes)
        subject = None if device.template.watchlist else self._rng.choice(device.processor.subjects)
        return Encounter(purpose, subject)

    def _situation(self, device: Device, encounter: Encounter) -> Record:
        """The envelope and the fields capture and match share."""
        subject = encounter.subject
        estimated_age = self._rng.choice((None, self._rng.randint(18, 75)))
        return {
            "event_id": self._uuid(),
            "event_time": self._clock,
            "processor_id": device.processor.processor_id,
            "deployment_id": device.deployment.deployment_id,
            "device_id": device.device_id,
            "region_code": device.deployment.region_code,
            "location_type": device.location_type,
            "public_place": device.public_place,
            "remote_noncontact": device.template.remote_noncontact,
            "purpose": encounter.purpose,
            "legal_basis": device.template.legal_basis,
            "subject_ref": subject.ref if subject else None,
            "consent_id": subject.consent_id if subject else None,
            "subject_age": subject.age if subject else estimated_age,
        }

    def _capture(self, device: Device, encounter: Encounter) -> Record:
        template = device.template
        return {
            **self._situation(device, encounter),
            "signage_present": True,
            "capture_zone_approved": True,
            "attribute_analysis": list(self._rng.choice(template.attributes)),
            "raw_image_retained": False,
            "anonymized": False,
            "retention_days": self._rng.choice(
                (template.retention_days, template.retention_days // 2)
            ),
            "storage_location": template.storage_location,
            "transmitted_off_device": template.transmitted,
            "transmission_channel": "private_network" if template.transmitted else None,
            "encrypted_at_rest": True,
            "encrypted_in_transit": True,
        }

    def _match(self, device: Device, encounter: Encounter, capture_id: str | None) -> Record:
        """A 1:1 check against the claimed identity, or a 1:N search that rarely hits."""
        rng, template = self._rng, device.template
        matched = rng.random() < template.match_rate
        if matched:
            score = rng.uniform(template.threshold + 0.01, 0.995)
        else:
            score = rng.uniform(0.2, template.threshold - 0.01)
        if template.watchlist:
            hit = rng.choice(device.processor.subjects) if matched else None
            encounter = Encounter(encounter.purpose, hit)
        return {
            **self._situation(device, encounter),
            "capture_event_id": capture_id,
            "match_mode": template.match_mode,
            "gallery_id": device.deployment.gallery_id,
            "gallery_size": device.deployment.gallery_size,
            "score": round(score, 4),
            "threshold": template.threshold,
            "matched": matched,
            "alternative_available": True,
            "alternative_offered": True,
            "subject_declined_fr": False,
            "service_denied": False,
            "operator_id": self._operator(device) if template.watchlist else None,
            "manual_review_id": self._uuid("rev") if template.watchlist and matched else None,
        }

    # -------------------------------------------------------------- helpers

    def _operator(self, device: Device) -> str:
        """Who ran a 1:N search: one of a handful of duty officers of the processor."""
        return f"op-{device.processor.processor_id}-{self._rng.randint(1, 12):02d}"

    def _days_ago(self, low: int, high: int) -> timedelta:
        """A random span of ``low``-``high`` days (and some seconds), for registry dates."""
        return timedelta(days=self._rng.randint(low, high), seconds=self._rng.randrange(86_400))

    def _uuid(self, prefix: str | None = None) -> str:
        """A version-4 UUID from the seeded generator: the same seed gives the same ids."""
        value = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        return f"{prefix}-{value}" if prefix else value


_ID_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK: Final = "10X98765432"


def resident_id(region_code: str, rng: random.Random) -> str:
    """An 18-character resident identity number of the region whose GB 11643 check
    character is right: what AUDIT-RAW-IDENTIFIER looks for."""
    born = datetime(1950, 1, 1) + timedelta(days=rng.randrange(365 * 50))
    body = f"{region_code}{born:%Y%m%d}{rng.randrange(1000):03d}"
    return body + _ID_CHECK[sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS, strict=True)) % 11]

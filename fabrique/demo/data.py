"""The demo site as data: zones, trainings, programmes, people, machines, edges, slots.

One table feeds both sides of the demo: :mod:`fabrique.demo.seed` writes it into the
hub's store, and :mod:`fabrique.demo.runner` turns it into the edges' settings (which
device kind plays each machine) and the visitors' badge pools, so the simulated
readers present exactly the badges the hub knows (and a few it must refuse).

People are described by their age *today* and birth month; birth years are derived
when seeding, so the age groups hold whenever the demo is run. Badge UIDs are fixed
(they are hashed with the demo site secret when seeded and when presented).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time

from protocol.kinds import MachineKind

#: zone id -> (name, capacity)
ZONES: dict[str, tuple[str, int | None]] = {
    "fablab": ("FabLab", 12),
    "gaming": ("Salle de jeux", 8),
}

#: training id -> (name, validity in days or None)
TRAININGS: dict[str, tuple[str, int | None]] = {
    "impression-3d": ("Impression 3D", None),
    "decoupe-laser": ("Découpe laser", 365),
}

PROGRAMMES: dict[str, str] = {
    "fablab-9-15": "FabLab 9/15",
    "fablab-16-25": "FabLab 16/25",
    "esport": "Équipe e-sport",
}


@dataclass(frozen=True, slots=True)
class DemoMachine:
    id: str
    name: str
    kind: MachineKind
    zone: str
    edge: str
    offline_rule: str = "allow"
    min_age: int | None = None
    trainings: tuple[str, ...] = ()


MACHINES: tuple[DemoMachine, ...] = (
    DemoMachine(
        "printer-1",
        "Imprimante 3D Prusa n°1",
        MachineKind.PRINTER,
        "fablab",
        "pi-fablab",
        trainings=("impression-3d",),
    ),
    DemoMachine(
        "printer-2",
        "Imprimante 3D Prusa n°2",
        MachineKind.PRINTER,
        "fablab",
        "pi-fablab",
        trainings=("impression-3d",),
    ),
    DemoMachine(
        "laser-1",
        "Découpeuse laser",
        MachineKind.LASER,
        "fablab",
        "pi-laser",
        offline_rule="staff_only",
        min_age=16,
        trainings=("decoupe-laser",),
    ),
    *(
        DemoMachine(f"pc-0{i}", f"PC gaming {i}", MachineKind.GAMING_PC, "gaming", f"pc-0{i}")
        for i in range(1, 5)
    ),
)

PRINTERS = ("printer-1", "printer-2")
LASER = ("laser-1",)
PCS = ("pc-01", "pc-02", "pc-03", "pc-04")

#: The printer served by a real OctoPrint (virtual printer) when one is installed; at
#: most one, to keep the demo light. The other printers are simulated.
OCTOPRINT_PRINTER = PRINTERS[0]

#: Device kinds that play the demo's machines (the printers' own
#: kind is chosen when the demo starts, see :data:`OCTOPRINT_PRINTER`).
ACTUATOR_KIND = "actuator.sim"
READER_KIND = "reader.sim"
PC_LOCK_KIND = "pc.sim"
LASER_KIND = "laser.simulated"
SIM_PRINTER_KIND = "printer.simulated"
#: Simulated power draw of a machine switched on (W), per edge agent kind.
LOAD_W = {"printer": 120.0, "laser": 40.0, "generic": 0.0}


@dataclass(frozen=True, slots=True)
class DemoPerson:
    """A member of the demo site; ``uses`` lists the machines they badge at, with weights."""

    uid: str
    name: str
    age: int
    birth_month: int
    role: str = "member"  # hub.db.models.Role value
    programmes: tuple[str, ...] = ()
    #: A guardian consented (only meaningful under 15).
    consent: bool = True
    #: training id -> days since it was granted.
    trainings: dict[str, int] = field(default_factory=dict)
    uses: dict[str, float] = field(default_factory=dict)
    #: Machines this person is the first to use in the demo (so each kind shows early).
    opens: tuple[str, ...] = ()

    @property
    def first_name(self) -> str:
        return self.name.split()[0]


def _on(machines: tuple[str, ...], weight: float) -> dict[str, float]:
    return dict.fromkeys(machines, weight)


PEOPLE: tuple[DemoPerson, ...] = (
    # 9-15: FabLab 9/15 and the gaming room.
    DemoPerson(
        "04D3A10000000001",
        "Inès Benali",
        12,
        3,
        programmes=("fablab-9-15",),
        trainings={"impression-3d": 60},
        uses={**_on(PRINTERS, 2), **_on(PCS, 2)},
    ),
    DemoPerson(
        "04D3A10000000002",
        "Yanis Haddad",
        13,
        9,
        programmes=("fablab-9-15",),
        uses={**_on(PRINTERS, 1), **_on(LASER, 0.5), **_on(PCS, 3)},
    ),
    DemoPerson("04D3A10000000003", "Lina Martin", 10, 6, uses=_on(PCS, 3)),
    # 12 years old, no parental consent yet: every badge is refused, politely.
    DemoPerson("04D3A10000000004", "Rayan Cherif", 12, 11, consent=False, uses=_on(PCS, 1)),
    DemoPerson(
        "04D3A10000000005",
        "Sofiane Diallo",
        14,
        1,
        programmes=("fablab-9-15", "esport"),
        trainings={"impression-3d": 200},
        uses={**_on(PRINTERS, 2), **_on(PCS, 2)},
    ),
    # 16-25: FabLab 16/25 (printers, laser) and the e-sport team.
    DemoPerson(
        "04D3A10000000006",
        "Amina Koné",
        17,
        5,
        programmes=("fablab-16-25",),
        trainings={"impression-3d": 300, "decoupe-laser": 100},
        uses={**_on(PRINTERS, 2), **_on(LASER, 3)},
        opens=LASER,
    ),
    # Laser training granted 400 days ago: expired (365-day validity).
    DemoPerson(
        "04D3A10000000007",
        "Karim Mansouri",
        19,
        2,
        programmes=("fablab-16-25",),
        trainings={"impression-3d": 500, "decoupe-laser": 400},
        uses={**_on(PRINTERS, 1), **_on(LASER, 2)},
    ),
    DemoPerson(
        "04D3A10000000008",
        "Léa Fontaine",
        22,
        8,
        programmes=("fablab-16-25",),
        trainings={"impression-3d": 90, "decoupe-laser": 30},
        uses={**_on(PRINTERS, 2), **_on(LASER, 3)},
    ),
    DemoPerson(
        "04D3A10000000009", "Mehdi Belkacem", 18, 4, programmes=("esport",), uses=_on(PCS, 3)
    ),
    # No laser training: refused at the laser, welcome at the printers.
    DemoPerson(
        "04D3A1000000000A",
        "Chloé Garcia",
        16,
        10,
        programmes=("fablab-16-25",),
        trainings={"impression-3d": 45},
        uses={**_on(PRINTERS, 2), **_on(LASER, 1)},
    ),
    DemoPerson(
        "04D3A1000000000B", "Moussa Traoré", 24, 7, programmes=("esport",), uses=_on(PCS, 3)
    ),
    # Adults.
    DemoPerson(
        "04D3A1000000000C",
        "Nadia Rahmani",
        35,
        12,
        trainings={"impression-3d": 20},
        uses={**_on(PRINTERS, 1), **_on(PCS, 1)},
    ),
    DemoPerson("04D3A1000000000D", "Julien Roux", 42, 2, uses=_on(PCS, 1)),
    # Staff: two animators and the fabmanager.
    DemoPerson(
        "04D3A1000000000E",
        "Samir Ouali",
        29,
        6,
        role="animator",
        trainings={"impression-3d": 700, "decoupe-laser": 120},
        uses=_on(LASER, 0.5),
    ),
    DemoPerson("04D3A1000000000F", "Camille Petit", 27, 9, role="animator", uses=_on(PCS, 0.3)),
    DemoPerson(
        "04D3A10000000010",
        "Fatou Sow",
        38,
        4,
        role="fabmanager",
        trainings={"impression-3d": 900, "decoupe-laser": 60},
        uses={**_on(PRINTERS, 0.5), **_on(LASER, 1)},
    ),
)

#: A badge nobody enrolled: refused as unknown.
UNKNOWN_BADGE = "04D3A1FFFFFFFFFF"


@dataclass(frozen=True, slots=True)
class DemoSlot:
    zone: str
    weekday: int  # 0 = Monday
    start: time
    end: time
    label: str
    age_groups: tuple[str, ...] = ()
    programmes: tuple[str, ...] = ()
    animator_required: bool = False


MON, TUE, WED, THU, FRI, SAT, SUN = range(7)

SLOTS: tuple[DemoSlot, ...] = (
    DemoSlot("fablab", WED, time(14), time(17), "FabLab 9/15", ("9-15",), animator_required=True),
    DemoSlot("fablab", SAT, time(10), time(12), "FabLab 9/15", ("9-15",), animator_required=True),
    *(
        DemoSlot("fablab", day, time(17), time(20), "FabLab 16/25", ("16-25",), ("fablab-16-25",))
        for day in (TUE, THU)
    ),
    DemoSlot("fablab", SAT, time(14), time(18), "FabLab 16/25", ("16-25",), ("fablab-16-25",)),
    DemoSlot("gaming", WED, time(14), time(18), "Salle de jeux — tout public"),
    DemoSlot("gaming", SAT, time(14), time(18), "Salle de jeux — tout public"),
    DemoSlot("gaming", FRI, time(18), time(21), "E-sport", programmes=("esport",)),
)

#: The special opening added so that the demo grants whatever the day and hour.
DEMO_OPENING_LABEL = "Créneau démo"


@dataclass(frozen=True, slots=True)
class DemoQuota:
    zone: str
    age_group: str
    daily_min: int | None
    break_after_min: int | None = None
    break_min: int | None = None


QUOTAS: tuple[DemoQuota, ...] = (
    DemoQuota("gaming", "9-15", 90, break_after_min=50, break_min=10),
    DemoQuota("gaming", "16-25", 120),
)


def birth_year(age: int, birth_month: int, today: date) -> int:
    """Birth year that makes someone born in ``birth_month`` exactly ``age`` today."""
    return today.year - age - (1 if today.month < birth_month else 0)


def edges() -> dict[str, list[DemoMachine]]:
    """Machines by edge id, in table order."""
    by_edge: dict[str, list[DemoMachine]] = {}
    for m in MACHINES:
        by_edge.setdefault(m.edge, []).append(m)
    return by_edge

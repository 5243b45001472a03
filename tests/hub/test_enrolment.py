"""Armed enrolments (pure): capture on the right machine and edge, once, within a minute."""

from __future__ import annotations

from datetime import timedelta

from hub.enrolment import Enrolments, EnrolState
from tests.hub.hubkit import NOW

HASH = "ab" * 32


def test_the_next_badge_on_the_armed_machine_is_captured_once() -> None:
    book = Enrolments(window_s=60)
    armed = book.arm("laser-1", "pi-fab", 7, "Nadia", 1, NOW)
    assert book.capture("printer-1", "pi-fab", HASH, NOW) is None  # another machine
    assert book.capture("laser-1", "pi-other", HASH, NOW) is None  # a foreign edge
    got = book.capture("laser-1", "pi-fab", HASH, NOW + timedelta(seconds=5))
    assert got is not None
    assert (got.token, got.member_id, got.badge_hash) == (armed.token, 7, HASH)
    assert book.capture("laser-1", "pi-fab", HASH, NOW + timedelta(seconds=6)) is None
    book.resolve(armed.token, EnrolState.BOUND, badge_id=3)
    done = book.get(armed.token, NOW + timedelta(seconds=7))
    assert done is not None
    assert done.state is EnrolState.BOUND
    assert done.badge_hash is None  # forgotten once bound


def test_an_enrolment_expires_after_its_minute() -> None:
    book = Enrolments(window_s=60)
    armed = book.arm("laser-1", "pi-fab", 7, "Nadia", 1, NOW)
    assert book.capture("laser-1", "pi-fab", HASH, NOW + timedelta(seconds=61)) is None
    later = book.get(armed.token, NOW + timedelta(seconds=62))
    assert later is not None
    assert later.state is EnrolState.EXPIRED
    assert book.armed_machines() == frozenset()


def test_arming_again_replaces_and_cancelling_stops() -> None:
    book = Enrolments()
    first = book.arm("pc-1", "pc-1", 7, "Nadia", 1, NOW)
    second = book.arm("pc-1", "pc-1", 8, "Yanis", 1, NOW)
    replaced = book.get(first.token, NOW)
    assert replaced is not None
    assert replaced.state is EnrolState.CANCELLED
    book.cancel(second.token)
    assert book.capture("pc-1", "pc-1", HASH, NOW) is None
    assert book.armed_machines() == frozenset()

"""The kiosk's sentences in three languages, and the policy's refusal parameters."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from hub.policy.engine import Code
from hub.web.kiosk_texts import REFUSALS, UI, lang_of, refusal, when

PARIS = ZoneInfo("Europe/Paris")
#: Monday 9 March 2026, 16:00 in Paris.
NOW = datetime(2026, 3, 9, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize("lang", ["ar", "en"])
def test_every_refusal_code_has_a_sentence(lang: str) -> None:
    refusals = {c.value for c in Code} - {Code.GRANTED.value, Code.GRANTED_STAFF.value}
    keys = set(REFUSALS[lang])  # type: ignore[index]
    missing = {c for c in refusals if c not in keys and f"{c}_day" not in keys}
    assert missing == set()
    assert set(UI[lang]) == set(UI["fr"])  # type: ignore[index]


def test_variable_parts_are_formatted_per_language() -> None:
    wednesday = datetime(2026, 3, 11, 13, 0, tzinfo=UTC)  # 14:00 in Paris
    params = {"next_start": wednesday}
    french = "Ce n'est pas ton créneau. Ton prochain créneau : mercredi à 14h00."
    assert refusal("outside_slot", french, params, "fr", NOW, PARIS) == french
    assert refusal("outside_slot", french, params, "en", NOW, PARIS) == (
        "This is not your time slot. Your next slot: on Wednesday at 14:00."
    )
    assert "الأربعاء" in refusal("outside_slot", french, params, "ar", NOW, PARIS)
    assert "14:00" in refusal("outside_slot", french, params, "ar", NOW, PARIS)
    assert refusal("outside_slot", french, {}, "en", NOW, PARIS).startswith("No slot planned")
    week = refusal("quota_exhausted", "", {"period": "week", "minutes": 120}, "en", NOW, PARIS)
    assert week == "You have used your 120 minutes this week. Come back Monday!"
    assert when(NOW, NOW, PARIS, "fr") == "aujourd'hui à 16h00"


def test_unknown_codes_and_languages_fall_back_to_french() -> None:
    assert refusal("brand_new_code", "Texte français.", {}, "en", NOW, PARIS) == "Texte français."
    assert lang_of("de") == "fr"
    assert lang_of("ar") == "ar"


def test_the_engine_gives_the_variable_parts_of_its_refusals() -> None:
    from hub.policy.engine import _Who

    decision = _Who().deny(Code.TOO_YOUNG, "trop jeune", min_age=14)
    assert dict(decision.params) == {"min_age": 14}


@pytest.mark.parametrize("lang", ["fr", "ar", "en"])
def test_a_machine_running_without_a_session_is_never_shown_free(lang: str) -> None:
    from hub.policy.model import Decision
    from hub.web.kiosk import screen_of
    from hub.web.tiles import Tile

    tile = Tile(
        id="printer-1",
        name="Prusa",
        kind="printer",
        zone_id="fablab",
        state="sans-session",
        state_label="En cours sans session",
        person=None,
        in_session=False,
        session_id=None,
        ends_at=None,
        job_running=True,
    )
    screen = screen_of(tile, None, show_names=False, lang=lang, now=NOW, tz=PARIS)  # type: ignore[arg-type]
    assert screen.state == "sans-session"
    assert screen.sentence == UI[lang]["foreign"]  # type: ignore[index]
    # A badge refused there is said (what to do: ask a fabmanager).
    refused = Decision(granted=False, code=Code.RUNNING_WITHOUT_SESSION.value, message="x")
    screen = screen_of(tile, (NOW, refused), show_names=False, lang=lang, now=NOW, tz=PARIS)  # type: ignore[arg-type]
    assert screen.state == "refuse"

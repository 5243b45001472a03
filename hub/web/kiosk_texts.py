"""What a kiosk screen says, in French (default), Arabic (right to left) and English.

The refusal sentences are keyed by the policy engine's stable reason codes
(:class:`hub.policy.engine.Code`); their variable parts come from
:attr:`hub.policy.model.Decision.params` and are formatted per language (times as
``15h30`` / ``15:30``, weekdays in each language). French refusals use the policy's own
message (:mod:`hub.policy.texts`), so there is one French wording. Short sentences,
"tu", and what to do next: a child reads them from two metres.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, tzinfo
from typing import Literal

Lang = Literal["fr", "ar", "en"]
LANGS: tuple[Lang, ...] = ("fr", "ar", "en")
LANG_NAMES: Mapping[Lang, str] = {"fr": "Français", "ar": "العربية", "en": "English"}
RTL = frozenset({"ar"})

#: The screen's own words, per language.
UI: Mapping[Lang, Mapping[str, str]] = {
    "fr": {
        "free": "Libre",
        "free_detail": "Passe ton badge pour commencer.",
        "busy": "Occupée",
        "until": "jusqu'à {time}",
        "ending": "Bientôt fini",
        "warn_10": "Plus que 10 minutes !",
        "warn_2": "Plus que 2 minutes : termine ce que tu fais.",
        "refused": "Badge refusé",
        "enrolled": "Badge associé",
        "granted": "C'est parti !",
        "offline": "Machine hors ligne",
        "offline_detail": "Préviens un animateur.",
        "maintenance": "En maintenance",
        "maintenance_detail": "Choisis une autre machine ou demande à un animateur.",
        "fault": "Machine en défaut",
        "fault_detail": "Ne touche à rien et préviens un animateur.",
        "foreign": "En cours sans session",
        "foreign_detail": "Un travail tourne sans badge : demande à un fabmanager.",
        "pause": "Pause obligatoire",
        "pause_detail": "Va te dégourdir les jambes, tu reviendras après.",
        "unpaired": "Écran non appairé : aucun nom n'est affiché.",
        "language": "Langue",
    },
    "ar": {
        "free": "متاحة",
        "free_detail": "مرّر بطاقتك لتبدأ.",
        "busy": "مشغولة",
        "until": "حتى الساعة {time}",
        "ending": "ستنتهي قريبًا",
        "warn_10": "بقيت 10 دقائق!",
        "warn_2": "بقيت دقيقتان: أنهِ ما تفعله.",
        "refused": "البطاقة مرفوضة",
        "enrolled": "تم ربط البطاقة",
        "granted": "هيا بنا!",
        "offline": "الآلة غير متصلة",
        "offline_detail": "أخبر أحد المنشطين.",
        "maintenance": "قيد الصيانة",
        "maintenance_detail": "اختر آلة أخرى أو اسأل أحد المنشطين.",
        "fault": "الآلة معطلة",
        "fault_detail": "لا تلمس شيئًا وأخبر أحد المنشطين.",
        "foreign": "قيد التشغيل دون جلسة",
        "foreign_detail": "عمل يجري دون بطاقة: اطلب من مسؤول الورشة.",
        "pause": "استراحة إلزامية",
        "pause_detail": "تحرّك قليلًا ثم عد بعد الاستراحة.",
        "unpaired": "الشاشة غير مقترنة: لا يُعرض أي اسم.",
        "language": "اللغة",
    },
    "en": {
        "free": "Free",
        "free_detail": "Tap your badge to start.",
        "busy": "In use",
        "until": "until {time}",
        "ending": "Ending soon",
        "warn_10": "10 minutes left!",
        "warn_2": "2 minutes left: finish what you are doing.",
        "refused": "Badge refused",
        "enrolled": "Badge linked",
        "granted": "Off you go!",
        "offline": "Machine offline",
        "offline_detail": "Tell an animator.",
        "maintenance": "Under maintenance",
        "maintenance_detail": "Pick another machine or ask an animator.",
        "fault": "Machine fault",
        "fault_detail": "Do not touch anything and tell an animator.",
        "foreign": "Running without a session",
        "foreign_detail": "A job runs that nobody badged for: ask a fabmanager.",
        "pause": "Break time",
        "pause_detail": "Stretch your legs, you can come back after.",
        "unpaired": "Screen not paired: no names are shown.",
        "language": "Language",
    },
}

#: Refusals in Arabic and English, by reason code ({placeholders} from the params).
REFUSALS: Mapping[Lang, Mapping[str, str]] = {
    "ar": {
        "too_many_attempts": "محاولات كثيرة متتالية: انتظر دقيقة. إن استمر الأمر، اسأل منشطًا.",
        "unknown_machine": "هذه الآلة غير معروفة: أخبر أحد المنشطين.",
        "unknown_badge": "بطاقة غير معروفة: اذهب إلى أحد المنشطين لتسجيلها.",
        "badge_revoked": "هذه البطاقة معطلة: اطلب بطاقة جديدة من أحد المنشطين.",
        "member_suspended": "حسابك موقوف حاليًا: تحدث مع أحد المنشطين.",
        "consent_missing": "تنقص موافقة والديك: أحضرها موقعة إلى الاستقبال.",
        "machine_maintenance": "هذه الآلة قيد الصيانة. اختر آلة أخرى أو اسأل منشطًا.",
        "machine_offline": "هذه الآلة لا تستجيب الآن: أخبر أحد المنشطين.",
        "machine_busy": "هذه الآلة مستعملة. اختر آلة أخرى متاحة.",
        "running_without_session": "عمل يجري على هذه الآلة دون جلسة: اطلب من مسؤول الورشة.",
        "training_missing": "تحتاج إلى تكوين «{training}» لهذه الآلة: اسأل أحد المنشطين.",
        "training_expired": "انتهت صلاحية تكوينك «{training}»: اطلب تجديده من أحد المنشطين.",
        "too_young": "هذه الآلة مخصصة لمن أعمارهم {min_age} سنة فما فوق. اسأل منشطًا.",
        "outside_slot": "ليس هذا وقت حصتك. حصتك القادمة: {next_start}.",
        "outside_slot_none": "لا توجد حصة لك في الأيام القادمة: اسأل أحد المنشطين.",
        "animator_required": "هذه الحصة تتم مع منشط: انتظر وصوله إلى القاعة.",
        "zone_full": "القاعة ممتلئة ({capacity} أماكن). انتظر أن يفرغ مكان.",
        "quota_exhausted_day": "استعملت دقائقك الـ{minutes} لهذا اليوم. عد غدًا!",
        "quota_exhausted_week": "استعملت دقائقك الـ{minutes} لهذا الأسبوع. عد يوم الاثنين!",
        "break_required": "استراحة إلزامية: عد {until}.",
        "badge_enrolled": "تم ربط البطاقة! مرّرها مرة أخرى لاستعمال الآلة.",
        "badge_already_enrolled": "هذه البطاقة مرتبطة بشخص آخر: اسأل أحد المنشطين.",
        "internal_error": "حدث خطأ: أعد المحاولة أو أخبر أحد المنشطين.",
    },
    "en": {
        "too_many_attempts": "Too many tries: wait a minute. If it still fails, ask an animator.",
        "unknown_machine": "This machine is not known: tell an animator.",
        "unknown_badge": "Unknown badge: ask an animator to register it.",
        "badge_revoked": "This badge is disabled: ask an animator for a new one.",
        "member_suspended": "Your account is suspended for now: talk to an animator.",
        "consent_missing": "Your parents' permission is missing: bring it signed to the desk.",
        "machine_maintenance": "Under maintenance. Pick another machine or ask an animator.",
        "machine_offline": "This machine is not answering right now: tell an animator.",
        "machine_busy": "Someone is already using this machine. Pick a free one.",
        "running_without_session": "A job runs here with nobody badged: ask a fabmanager.",
        "training_missing": "You need the “{training}” training for this machine: ask an animator.",
        "training_expired": "Your “{training}” training has expired: ask an animator to renew it.",
        "too_young": "This machine is for ages {min_age} and up. Ask an animator what you can use.",
        "outside_slot": "This is not your time slot. Your next slot: {next_start}.",
        "outside_slot_none": "No slot planned for you in the coming days: ask an animator.",
        "animator_required": "This slot needs an animator: wait until they arrive.",
        "zone_full": "The room is full ({capacity} places). Wait for a place to free up.",
        "quota_exhausted_day": "You used your {minutes} minutes for today. Come back tomorrow!",
        "quota_exhausted_week": "You have used your {minutes} minutes this week. Come back Monday!",
        "break_required": "Break time: come back {until}.",
        "badge_enrolled": "Badge linked! Tap it again to use the machine.",
        "badge_already_enrolled": "This badge already belongs to someone: ask an animator.",
        "internal_error": "Something went wrong: try again or tell an animator.",
    },
}

_WEEKDAYS: Mapping[Lang, tuple[str, ...]] = {
    "fr": ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
    "ar": ("الاثنين", "الثلاثاء", "الأربعاء", "الخميس", "الجمعة", "السبت", "الأحد"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}


def lang_of(value: str | None) -> Lang:
    """A supported language, French when unknown."""
    for lang in LANGS:
        if value == lang:
            return lang
    return "fr"


def clock(dt: datetime, tz: tzinfo, lang: Lang) -> str:
    """``15h30`` in French, ``15:30`` otherwise."""
    local = dt.astimezone(tz)
    if lang == "fr":
        return f"{local.hour}h{local.minute:02d}"
    return f"{local.hour}:{local.minute:02d}"


def when(dt: datetime, now: datetime, tz: tzinfo, lang: Lang) -> str:
    """``today at 15:30``, ``tomorrow at 9:00``, ``Wednesday at 14:00``, or a date."""
    local = dt.astimezone(tz)
    days = (local.date() - now.astimezone(tz).date()).days
    at = clock(dt, tz, lang)
    words = {
        "fr": ("aujourd'hui à {at}", "demain à {at}", "{day} à {at}", "le {date} à {at}"),
        "ar": ("اليوم على {at}", "غدًا على {at}", "يوم {day} على {at}", "يوم {date} على {at}"),
        "en": ("today at {at}", "tomorrow at {at}", "on {day} at {at}", "on {date} at {at}"),
    }[lang]
    if days == 0:
        return words[0].format(at=at)
    if days == 1:
        return words[1].format(at=at)
    if 2 <= days <= 6:
        return words[2].format(day=_WEEKDAYS[lang][local.weekday()], at=at)
    return words[3].format(date=_date(local.date()), at=at)


def _date(d: date) -> str:
    return f"{d.day:02d}/{d.month:02d}"


def refusal(
    code: str,
    french: str,
    params: Mapping[str, object],
    lang: Lang,
    now: datetime,
    tz: tzinfo,
) -> str:
    """The refusal sentence of ``code`` in ``lang`` (``french``: the policy's own message)."""
    if lang == "fr":
        return french
    catalog = REFUSALS[lang]
    key = code
    values: dict[str, str] = {}
    for name, value in params.items():
        if isinstance(value, datetime):
            values[name] = when(value, now, tz, lang)
        elif value is not None:
            values[name] = str(value)[:40]
    if code == "outside_slot" and "next_start" not in values:
        key = "outside_slot_none"
    if code == "quota_exhausted":
        key = "quota_exhausted_week" if params.get("period") == "week" else "quota_exhausted_day"
    template = catalog.get(key)
    if template is None:
        return catalog["internal_error"] if code == "internal_error" else french
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError):
        return french

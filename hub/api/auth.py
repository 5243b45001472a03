"""Accounts, passwords, API tokens and the role matrix.

* Passwords are hashed with argon2id at a cost that fits a Raspberry Pi
  (:data:`PI_MEMORY_KIB`, OWASP's 19 MiB / 2 passes), at most :data:`HASHING_SLOTS`
  at once; tests pass cheaper parameters. Passwords must pass :mod:`hub.passwords`.
* A login issues a random token (``secrets.token_urlsafe(32)``). Only its keyed SHA-256
  digest (HMAC with ``settings.session_secret``) is stored, with an expiry, so a leaked
  database holds no usable token. The token travels as an HttpOnly, SameSite=Strict
  cookie or as ``Authorization: Bearer``.
* :data:`MATRIX` is the single declarative place saying which roles may use which
  capability; every route names exactly one capability (see :func:`hub.api.deps.allow`).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from hub.db.models import Account, ApiToken, Member, Role
from hub.passwords import WeakPasswordError as WeakPasswordError  # re-exported
from hub.passwords import check_password
from hub.settings import HubSettings
from protocol.messages import utcnow

log = logging.getLogger(__name__)

#: Name of the session cookie set at login.
COOKIE_NAME = "fabrique_session"
#: Where :class:`hub.api.limits.AuthGate` leaves the request's principal in the ASGI scope.
PRINCIPAL_KEY = "fabrique.principal"
USERNAME_PATTERN = r"^[A-Za-z0-9._@-]{3,64}$"
_USERNAME_RE = re.compile(USERNAME_PATTERN)


class Capability(enum.StrEnum):
    """What a route lets its caller do; roles are granted capabilities in :data:`MATRIX`."""

    #: Own account and own member data (/api/auth/me, /api/me, logout).
    SELF = "self"
    #: Read zones, programmes, trainings, slots, exceptions, quotas, machines.
    REFERENCE_READ = "reference.read"
    #: Create, edit, delete zones, programmes, trainings, slots, exceptions, quotas, machines.
    REFERENCE_WRITE = "reference.write"
    #: Maintenance on/off, pause/resume/cancel a print.
    MACHINE_COMMAND = "machine.command"
    #: Live floor: machines with their state and current user (first name for staff).
    LIVE_READ = "live.read"
    #: Edges and their liveness, alerts.
    FLOOR_READ = "floor.read"
    #: Resolve an alert.
    ALERT_RESOLVE = "alert.resolve"
    #: Read members (animators get first names and trainings only).
    MEMBERS_READ = "members.read"
    #: Open the members pages: full names, birth dates, consent, badges.
    MEMBERS_IDENTIFY = "members.identify"
    #: Create, edit, delete members (including role, status, consent).
    MEMBERS_WRITE = "members.write"
    #: Export or erase all of a member's data (GDPR rights).
    MEMBER_DATA = "members.data"
    #: Grant or withdraw a member's training.
    TRAININGS_GRANT = "trainings.grant"
    #: List badges.
    BADGES_READ = "badges.read"
    #: Enrol and revoke badges.
    BADGES_WRITE = "badges.write"
    #: Delete a badge row (to re-enrol a card given to the wrong person).
    BADGES_DELETE = "badges.delete"
    #: Read sessions (animators: first names only). Not coordinators: a list of sessions
    #: with age group, programme, machine and times rebuilds the groups reports hide.
    SESSIONS_READ = "sessions.read"
    #: End someone's session.
    SESSIONS_END = "sessions.end"
    #: List print jobs with who started them (coordinators get totals only, in reports).
    JOBS_READ = "jobs.read"
    #: Create a zone's recommended (healthy-gaming) quotas where none exist.
    QUOTAS_RECOMMEND = "quotas.recommend"
    #: See which staff are present where.
    PRESENCE_READ = "presence.read"
    #: Mark oneself present in / absent from a zone.
    PRESENCE_WRITE = "presence.write"
    #: Usage totals and CSV reports (coordinators: groups under 5 people hidden).
    REPORTS_READ = "reports.read"
    #: Manage login accounts.
    ACCOUNTS = "accounts"
    #: Read the API documentation and schema when ``api_docs = "admin"`` (production).
    API_DOCS = "api.docs"
    #: Read the audit trail (logins, staff actions).
    AUDIT_READ = "audit.read"


_A, _F, _N, _C, _M = Role.ADMIN, Role.FABMANAGER, Role.ANIMATOR, Role.COORDINATOR, Role.MEMBER

#: The role matrix: the only place that says who may do what.
MATRIX: Mapping[Capability, frozenset[Role]] = {
    Capability.SELF: frozenset({_A, _F, _N, _C, _M}),
    Capability.REFERENCE_READ: frozenset({_A, _F, _N, _C}),
    Capability.REFERENCE_WRITE: frozenset({_A}),
    Capability.MACHINE_COMMAND: frozenset({_A, _F, _N}),
    Capability.LIVE_READ: frozenset({_A, _F, _N, _C}),
    Capability.FLOOR_READ: frozenset({_A, _F, _N}),
    Capability.ALERT_RESOLVE: frozenset({_A, _F, _N}),
    Capability.MEMBERS_READ: frozenset({_A, _F, _N}),
    Capability.MEMBERS_IDENTIFY: frozenset({_A, _F}),
    Capability.MEMBERS_WRITE: frozenset({_A}),
    Capability.MEMBER_DATA: frozenset({_A}),
    Capability.TRAININGS_GRANT: frozenset({_A, _F}),
    Capability.BADGES_READ: frozenset({_A, _F}),
    Capability.BADGES_WRITE: frozenset({_A, _F}),
    Capability.BADGES_DELETE: frozenset({_A}),
    Capability.SESSIONS_READ: frozenset({_A, _F, _N}),
    Capability.SESSIONS_END: frozenset({_A, _F, _N}),
    Capability.JOBS_READ: frozenset({_A, _F}),
    Capability.QUOTAS_RECOMMEND: frozenset({_A, _F}),
    Capability.PRESENCE_READ: frozenset({_A, _F, _N}),
    Capability.PRESENCE_WRITE: frozenset({_A, _F, _N}),
    Capability.REPORTS_READ: frozenset({_A, _F, _C}),
    Capability.ACCOUNTS: frozenset({_A}),
    Capability.API_DOCS: frozenset({_A}),
    Capability.AUDIT_READ: frozenset({_A}),
}

#: Roles that see members' identities (full names, member ids) in sessions and reports.
IDENTIFYING_ROLES = frozenset({_A, _F})


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of a request (detached from any database session)."""

    account_id: int
    username: str
    role: Role
    member_id: int | None
    token_id: int


def check_password_strength(password: str, username: str = "") -> None:
    """Raise :class:`~hub.passwords.WeakPasswordError` if ``password`` is not acceptable."""
    check_password(password, [username])


def create_account(
    session: Session,
    username: str,
    password: str,
    role: Role | str,
    member_id: int | None = None,
    *,
    hasher: PasswordHasher | None = None,
) -> Account:
    """Add a login account to ``session`` (flushed, not committed) and return it.

    Used by the API and by ``fabrique hub create-admin``.

    Raises:
        ValueError: weak password (:class:`WeakPasswordError`), bad username, unknown
            role, unknown member, or the username is taken.
    """
    if not _USERNAME_RE.match(username):
        raise ValueError(
            "Identifiant invalide : 3 à 64 caractères parmi lettres, chiffres, . _ @ -"
        )
    check_password_strength(password, username)
    try:
        role = Role(role)
    except ValueError as err:
        raise ValueError(f"Rôle inconnu : {role}") from err
    if member_id is not None and session.get(Member, member_id) is None:
        raise ValueError(f"Membre {member_id} introuvable")
    if session.scalar(select(Account.id).where(Account.username == username)) is not None:
        raise ValueError(f"L'identifiant {username} est déjà utilisé")
    account = Account(
        username=username,
        password_hash=(hasher or pi_password_hasher()).hash(password),
        role=role,
        member_id=member_id,
        active=True,
    )
    session.add(account)
    session.flush()
    log.info("account %d created with role %s", account.id, role.value)
    return account


def token_digest(settings: HubSettings, token: str) -> str:
    """The stored form of an API token: HMAC-SHA256 keyed with the session secret."""
    key = settings.session_secret.get_secret_value().encode()
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def issue_token(session: Session, settings: HubSettings, account: Account) -> tuple[str, datetime]:
    """Create a token for ``account``; returns the raw token (shown once) and its expiry."""
    token = secrets.token_urlsafe(32)
    expires_at = utcnow() + timedelta(hours=settings.token_ttl_h)
    session.add(
        ApiToken(
            token_hash=token_digest(settings, token), account_id=account.id, expires_at=expires_at
        )
    )
    return token, expires_at


def resolve_token(session: Session, settings: HubSettings, token: str) -> Principal | None:
    """The principal a token belongs to, or None if unknown, expired or its account inactive.

    An expired token is deleted on sight.
    """
    if not token or len(token) > 256:
        return None
    row = session.execute(
        select(ApiToken, Account)
        .join(Account, Account.id == ApiToken.account_id)
        .where(ApiToken.token_hash == token_digest(settings, token))
    ).first()
    if row is None:
        return None
    api_token, account = row
    if api_token.expires_at <= utcnow():
        session.delete(api_token)
        session.commit()
        return None
    if not account.active:
        return None
    return Principal(
        account_id=account.id,
        username=account.username,
        role=Role(account.role),
        member_id=account.member_id,
        token_id=api_token.id,
    )


def revoke_tokens(session: Session, account_id: int) -> None:
    """Delete every token of an account (password change, deactivation)."""
    session.execute(delete(ApiToken).where(ApiToken.account_id == account_id))


#: argon2id cost (passes, KiB, lanes) that fits a Raspberry Pi: OWASP's 19 MiB, 2 passes,
#: 1 lane (the library's default of 64 MiB each took 1.1 GB for 60 parallel logins).
#: Older hashes are upgraded at the next successful login (:meth:`PasswordChecker.needs_rehash`).
PI_TIME_COST, PI_MEMORY_KIB, PI_PARALLELISM = 2, 19 * 1024, 1
#: At most this many password hashes are computed at once (memory: 2 × 19 MiB).
HASHING_SLOTS = 2
#: How long a login waits for a hashing slot before answering "busy".
HASHING_WAIT_S = 10.0


def pi_password_hasher() -> PasswordHasher:
    """The production password hasher (:data:`PI_MEMORY_KIB`, :data:`PI_TIME_COST`)."""
    return PasswordHasher(
        time_cost=PI_TIME_COST, memory_cost=PI_MEMORY_KIB, parallelism=PI_PARALLELISM
    )


class HashingBusy(RuntimeError):
    """No hashing slot freed up in time (a flood of logins)."""


class PasswordChecker:
    """Verifies passwords against stored hashes, with the same work for unknown users.

    At most ``slots`` hashes run at once (each holds ``memory_cost`` KiB): a flood of
    logins queues instead of exhausting memory.
    """

    def __init__(
        self, hasher: PasswordHasher, slots: int = HASHING_SLOTS, wait_s: float = HASHING_WAIT_S
    ) -> None:
        self.hasher = hasher
        self.slots = slots
        self._slots = threading.BoundedSemaphore(slots)
        self._wait_s = wait_s
        self._dummy: str | None = None

    def _slot(self) -> None:
        if not self._slots.acquire(timeout=self._wait_s):
            raise HashingBusy("no password-hashing slot free")

    def hash(self, password: str) -> str:
        """Hash ``password`` within a slot.

        Raises:
            HashingBusy: no slot freed up in time.
        """
        self._slot()
        try:
            return self.hasher.hash(password)
        finally:
            self._slots.release()

    def _dummy_hash(self) -> str:
        if self._dummy is None:
            self._dummy = self.hasher.hash(secrets.token_urlsafe(16))
        return self._dummy

    def verify(self, account: Account | None, password: str) -> bool:
        """True iff ``account`` exists, is active and ``password`` matches its hash.

        Raises:
            HashingBusy: no slot freed up in time.
        """
        stored = account.password_hash if account is not None else self._dummy_hash()
        self._slot()
        try:
            self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
        finally:
            self._slots.release()
        return account is not None and account.active

    def needs_rehash(self, account: Account) -> bool:
        try:
            return self.hasher.check_needs_rehash(account.password_hash)
        except InvalidHashError:
            return False


@dataclass(slots=True)
class _Failures:
    count: int = 0
    last: float = 0.0


class LoginThrottle:
    """Growing delays after failed logins, per username and per client address; no lockout.

    Each key (a username, an address) gets ``free`` failures; after that, an attempt is
    admitted only ``base_delay_s × 2^(failures − free)`` seconds after the key's last
    failure, capped at ``max_delay_s``. A key's failures are forgotten after ``forget_s``
    without one. An attempt is *counted before* its password is checked
    (:meth:`begin`), so parallel guesses cannot overtake the count; a success takes it
    back (:meth:`succeeded`).

    The cap keeps a wrong-password flood from locking the real person out: they wait at
    most ``max_delay_s``. And a username's delay does not apply from an address where
    that account logged in successfully within ``known_good_s`` (a "known-good" pair):
    an attacker elsewhere cannot delay the admin at their usual desk. Addresses get
    more free failures than usernames: a site's users share its router's address.
    In memory (one hub per site), bounded in size.
    """

    def __init__(
        self,
        user_free: int = 5,
        address_free: int = 30,
        base_delay_s: float = 1.0,
        max_delay_s: float = 60.0,
        forget_s: float = 900.0,
        known_good_s: float = 30 * 86400.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.user_free = user_free
        self.address_free = address_free
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.forget_s = forget_s
        self.known_good_s = known_good_s
        self._clock = clock
        self._failures: dict[str, _Failures] = {}
        self._known_good: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def _delay(self, entry: _Failures, free: int) -> float:
        if entry.count < free:
            return 0.0
        return min(self.max_delay_s, self.base_delay_s * 2.0 ** (entry.count - free))

    def _entry(self, key: str, now: float) -> _Failures:
        entry = self._failures.get(key)
        if entry is None or now - entry.last > self.forget_s:
            entry = self._failures[key] = _Failures()
        return entry

    def _keys(self, username: str, address: str, now: float) -> list[tuple[str, int]]:
        user = username.lower()
        keys = [(f"ip:{address}", self.address_free)]
        seen = self._known_good.get((user, address))
        if seen is None or now - seen > self.known_good_s:
            keys.append((f"user:{user}", self.user_free))
        return keys

    def begin(self, username: str, address: str) -> float:
        """Admit an attempt (0, and count it as a failure) or say how long to wait (> 0)."""
        now = self._clock()
        with self._lock:
            keys = self._keys(username, address, now)
            entries = [(self._entry(key, now), free) for key, free in keys]
            waits = [e.last + self._delay(e, free) - now for e, free in entries if e.count]
            wait = max(waits, default=0.0)
            if wait > 0:
                return wait
            for entry, _ in entries:
                entry.count += 1
                entry.last = now
            self._bound(now)
        return 0.0

    def retry_after(self, username: str, address: str) -> float:
        """Seconds until ``username`` may try again from ``address`` (0: now); counts nothing."""
        now = self._clock()
        with self._lock:
            entries = [
                (self._failures[key], free)
                for key, free in self._keys(username, address, now)
                if key in self._failures and now - self._failures[key].last <= self.forget_s
            ]
            waits = [e.last + self._delay(e, free) - now for e, free in entries if e.count]
        return max([0.0, *waits])

    def succeeded(self, username: str, address: str) -> None:
        """The attempt begun for ``username`` was right: forget its failures, trust the pair."""
        now = self._clock()
        user = username.lower()
        with self._lock:
            self._failures.pop(f"user:{user}", None)
            entry = self._failures.get(f"ip:{address}")
            if entry is not None and entry.count:
                entry.count -= 1  # the attempt counted in begin() did not fail
            self._known_good[(user, address)] = now

    def _bound(self, now: float) -> None:
        if len(self._failures) > 10_000:  # a flood of usernames or addresses
            self._failures = {
                k: e for k, e in self._failures.items() if now - e.last <= self.forget_s
            }
        if len(self._known_good) > 10_000:
            self._known_good = {
                k: t for k, t in self._known_good.items() if now - t <= self.known_good_s
            }

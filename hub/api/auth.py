"""Accounts, passwords, API tokens and the role matrix.

* Passwords are hashed with argon2id (argon2-cffi's :class:`PasswordHasher`); tests pass
  cheaper parameters, production keeps the library's defaults.
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
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from hub.db.models import Account, ApiToken, Member, Role
from hub.settings import HubSettings
from protocol.messages import utcnow

log = logging.getLogger(__name__)

#: Name of the session cookie set at login.
COOKIE_NAME = "fabrique_session"
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
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


class WeakPasswordError(ValueError):
    """The password is too short or too long; the message is French, for the user."""


def check_password_strength(password: str) -> None:
    """Raise :class:`WeakPasswordError` if ``password`` is not acceptable."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPasswordError(
            f"Mot de passe trop faible : au moins {MIN_PASSWORD_LENGTH} caractères"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPasswordError(
            f"Mot de passe trop long : au plus {MAX_PASSWORD_LENGTH} caractères"
        )
    if not password.strip():
        raise WeakPasswordError("Mot de passe trop faible : il ne contient que des espaces")


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
    check_password_strength(password)
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
        password_hash=(hasher or PasswordHasher()).hash(password),
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


class PasswordChecker:
    """Verifies passwords against stored hashes, with the same work for unknown users."""

    def __init__(self, hasher: PasswordHasher) -> None:
        self.hasher = hasher
        self._dummy: str | None = None

    def _dummy_hash(self) -> str:
        if self._dummy is None:
            self._dummy = self.hasher.hash(secrets.token_urlsafe(16))
        return self._dummy

    def verify(self, account: Account | None, password: str) -> bool:
        """True iff ``account`` exists, is active and ``password`` matches its hash."""
        stored = account.password_hash if account is not None else self._dummy_hash()
        try:
            self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
        return account is not None and account.active

    def needs_rehash(self, account: Account) -> bool:
        try:
            return self.hasher.check_needs_rehash(account.password_hash)
        except InvalidHashError:
            return False


class LoginThrottle:
    """Slows credential stuffing: too many recent failures for a username or an address → wait.

    A username gets ``user_limit`` failures per ``window_s``; a client address gets
    ``ip_limit`` (higher: a site's users often share one address behind its router, and
    one person mistyping must not lock everyone out). In memory: one hub per site.
    """

    def __init__(self, user_limit: int = 5, ip_limit: int = 30, window_s: float = 300.0) -> None:
        self.user_limit = user_limit
        self.ip_limit = ip_limit
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and q[0] <= now - self.window_s:
            q.popleft()
        return q

    def _keys(self, username: str, address: str) -> tuple[tuple[str, int], ...]:
        return ((f"user:{username.lower()}", self.user_limit), (f"ip:{address}", self.ip_limit))

    def retry_after(self, username: str, address: str) -> float:
        """Seconds until ``username`` may try again from ``address`` (0: now)."""
        now = time.monotonic()
        with self._lock:
            waits = [
                q[-limit] + self.window_s - now
                for key, limit in self._keys(username, address)
                if len(q := self._recent(key, now)) >= limit
            ]
        return max(waits, default=0.0)

    def failed(self, username: str, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key, _ in self._keys(username, address):
                self._recent(key, now).append(now)
            if len(self._failures) > 10_000:  # bound memory under a flood
                self._failures = {k: q for k, q in self._failures.items() if q}

    def succeeded(self, username: str) -> None:
        """Forget the username's failures (not the address's)."""
        with self._lock:
            self._failures.pop(f"user:{username.lower()}", None)

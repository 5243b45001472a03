"""What makes a shared secret acceptable (the site secret, the hub's session secret).

The hub and its edges share the site secret, so both check it with :func:`secret_problem`.
A secret needs :data:`MIN_SECRET_LENGTH` characters (as the README promises), must not be
or contain a placeholder word (``changeme``, ``secret``…), and must not be a short pattern
repeated (``changeme-changeme-changeme``, ``abcabcabc…``) or use too few distinct
characters. Every refusal says, in French, the command that makes a good one.
"""

from __future__ import annotations

MIN_SECRET_LENGTH = 32
#: Fewer distinct characters than this is not random (a hex secret of 32 has about 14).
MIN_DISTINCT = 10
#: Secrets that must never reach production (compared case-insensitively).
PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "change_me", "secret", "password", "demo", "xxx", "todo"}
)
#: Words that betray a placeholder anywhere in a secret (random text does not hold them).
PLACEHOLDER_WORDS = (
    "changeme",
    "change-me",
    "change_me",
    "not-for-production",
    "placeholder",
    "example",
    "replace-me",
)
#: The command that makes a good secret (said in every refusal).
MAKE_SECRET = "python3 -c 'import secrets; print(secrets.token_hex(32))'"  # noqa: S105


def _repeats(value: str) -> bool:
    """True if ``value`` is one short unit (up to a third of it) repeated, with separators."""
    core = "".join(ch for ch in value.lower() if ch.isalnum())
    for size in range(1, len(core) // 3 + 1):
        unit = core[:size]
        if unit * (len(core) // size) + unit[: len(core) % size] == core:
            return True
    return False


def secret_problem(name: str, value: str, env: str) -> str | None:
    """Why ``value`` is not acceptable for the secret ``name`` (French), or None.

    Args:
        name: the setting's name (``site_secret``).
        value: the secret.
        env: the environment variable that sets it, named in the message.
    """
    fix = f"générez-en un avec `{MAKE_SECRET}` et mettez-le dans {env} ou le fichier"
    lowered = value.lower()
    if lowered in PLACEHOLDER_SECRETS or any(w in lowered for w in PLACEHOLDER_WORDS):
        return f"{name} est une valeur d'exemple : {fix}"
    if len(value) < MIN_SECRET_LENGTH:
        return (
            f"{name} est trop court ({len(value)} caractères, {MIN_SECRET_LENGTH} au moins) : {fix}"
        )
    if _repeats(value) or len(set(value)) < MIN_DISTINCT:
        return (
            f"{name} n'est pas aléatoire (motif répété ou trop peu de caractères "
            f"différents) : {fix}"
        )
    return None

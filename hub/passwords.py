"""Which login passwords are acceptable: long enough and not guessable, checked offline.

A password needs :data:`MIN_LENGTH` characters and a zxcvbn score of at least
:data:`MIN_SCORE` (of 4). zxcvbn (Dropbox's estimator, MIT) ships its own frequency
lists (the most common passwords, names, English words) and spots repeats, sequences,
keyboard patterns and dates, all offline. The username and the site's name count as
known words. Every refusal says, in French, how to make a good password.
"""

from __future__ import annotations

from collections.abc import Sequence

from zxcvbn import zxcvbn

MIN_LENGTH = 12
MAX_LENGTH = 256
#: zxcvbn scores 0-4; 3 is "safely unguessable: moderate protection from offline attacks".
MIN_SCORE = 3
#: Only this many leading characters are scored (zxcvbn's cost grows with the length).
_SCORED = 100

#: How to make a good password (said in every refusal).
HOW_TO = (
    "choisissez une phrase de plusieurs mots sans rapport entre eux, ou générez-en un avec "
    "`python3 -c 'import secrets; print(secrets.token_urlsafe(16))'`"
)


class WeakPasswordError(ValueError):
    """The password is refused; the message is French, for the user."""


def check_password(password: str, known_words: Sequence[str] = ()) -> None:
    """Raise :class:`WeakPasswordError` unless ``password`` is acceptable.

    Args:
        password: the candidate.
        known_words: words an attacker knows (username, site name): using them is weak.
    """
    if len(password) > MAX_LENGTH:
        raise WeakPasswordError(f"Mot de passe trop long : au plus {MAX_LENGTH} caractères")
    if len(password) < MIN_LENGTH:
        raise WeakPasswordError(
            f"Mot de passe trop faible : au moins {MIN_LENGTH} caractères ; {HOW_TO}"
        )
    if not password.strip():
        raise WeakPasswordError(
            f"Mot de passe trop faible : il ne contient que des espaces ; {HOW_TO}"
        )
    words = [w for w in known_words if w] + ["fabrique", "fablab", "motdepasse"]
    result = zxcvbn(password[:_SCORED], user_inputs=words)
    if int(result["score"]) < MIN_SCORE:
        raise WeakPasswordError(
            "Mot de passe trop faible : trop courant ou trop facile à deviner "
            f"(mot connu, répétition, suite ou date) ; {HOW_TO}"
        )

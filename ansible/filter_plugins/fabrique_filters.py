"""Jinja filters the fabrique roles need and Ansible lacks.

* ``mosquitto_passwd_hash``: a Mosquitto 2 password-file hash (``$7$``, PBKDF2-SHA512)
  whose salt is derived from the site, the user and the password, so that rendering the
  same inventory twice gives the same file (idempotent runs, no plaintext kept on the
  host) while two sites or two users never share a hash.
* ``to_toml``: the TOML of a mapping (the hub's and the edges' settings files), written
  from the inventory's data so that every key of ``docs/edge.md`` can be given as YAML.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

MOSQUITTO_ITERATIONS = 101  # mosquitto_passwd's own default


def mosquitto_passwd_hash(password: str, user: str, site: str) -> str:
    """The ``$7$`` line Mosquitto checks ``password`` against, deterministic per user."""
    salt = hmac.new(
        password.encode(), f"fabrique-mosquitto:{site}:{user}".encode(), hashlib.sha256
    ).digest()[:12]
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, MOSQUITTO_ITERATIONS)
    b64 = base64.b64encode
    return f"$7${MOSQUITTO_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def _key(key: str) -> str:
    bare = key.replace("-", "").replace("_", "")
    return key if key and bare.isascii() and bare.isalnum() else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML cannot hold {value!r}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_key(str(k))} = {_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _is_table_list(value: Any) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value)
    )


def _table(data: Mapping[str, Any], path: list[str], out: list[str]) -> None:
    tables = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, Mapping) or _is_table_list(value):
            tables.append((key, value))
        else:
            out.append(f"{_key(str(key))} = {_value(value)}")
    for key, value in tables:
        sub = [*path, _key(str(key))]
        if isinstance(value, Mapping):
            out.extend(["", "[" + ".".join(sub) + "]"])
            _table(value, sub, out)
        else:
            for item in value:
                out.extend(["", "[[" + ".".join(sub) + "]]"])
                _table(item, sub, out)


def to_toml(data: Mapping[str, Any]) -> str:
    """TOML for ``data``: scalars first, then tables and arrays of tables; None is left out."""
    out: list[str] = []
    _table(data, [], out)
    return "\n".join(out).lstrip("\n") + "\n"


class FilterModule:
    """Ansible's entry point for this file's filters."""

    def filters(self) -> dict[str, Any]:
        return {"mosquitto_passwd_hash": mosquitto_passwd_hash, "to_toml": to_toml}

"""Errors raised while decoding the MQTT contract.

::

    ProtocolError
    ├── TopicError            topic outside the contract (wrong root, depth, id)
    └── PayloadError          payload cannot become a message
        ├── MalformedPayload  too large, not UTF-8, not JSON, not a JSON object
        ├── UnsupportedVersion  "v" missing or not a version we speak
        └── SchemaError       fields missing, unknown, or of the wrong type

Every error carries a short machine-readable ``reason`` suitable for a metric label.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class for everything that violates the edge<->hub contract."""

    reason: str = "protocol"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class TopicError(ProtocolError):
    """The topic does not belong to the contract."""

    reason = "topic"


class PayloadError(ProtocolError):
    """The payload cannot be turned into the expected message."""

    reason = "payload"


class MalformedPayload(PayloadError):
    """Too large, not UTF-8, not JSON, or not a JSON object."""

    reason = "malformed"


class UnsupportedVersion(PayloadError):
    """The ``v`` field is missing or names a schema version we do not speak."""

    reason = "version"


class SchemaError(PayloadError):
    """The JSON object does not match the message model."""

    reason = "schema"

"""A Shelly Gen2/Gen3 smart plug or relay, over its local HTTP RPC API.

The device is switched with ``GET /rpc/Switch.Set?id=<n>&on=true|false`` (answer
``{"was_on": bool}``) and read with ``GET /rpc/Switch.GetStatus?id=<n>``, whose
answer carries ``output`` and, on metering models, ``apower`` (W), ``voltage``,
``current`` and ``aenergy.total`` (Wh). On error the device answers an HTTP error
status with ``{"code": <int>, "message": <str>}``; with authentication enabled it
answers 401 and expects HTTP digest auth as user ``admin``.

Errors are translated at this boundary::

    httpx.TimeoutException        -> DeviceTimeout
    other httpx transport errors  -> DeviceUnavailable   (refused, DNS, reset)
    HTTP 401                      -> DeviceAuthError
    other HTTP error status       -> DeviceProtocolError (with the device's code)
    body not JSON / wrong shape   -> DeviceProtocolError

Fail-safe: configure the plug's own ``initial_state`` to ``off`` so it stays off
after a power cut whatever the agent does. For lasers, ``auto_off_s`` sends
``toggle_after`` with every ``on()``: the plug switches itself off after that many
seconds unless the agent calls ``on()`` again, a hardware dead-man that still
works when the Pi hangs (research §3.4 "hardware lease").
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from devices.actuators.base import ActuatorBase
from devices.errors import (
    DeviceAuthError,
    DeviceError,
    DeviceProtocolError,
    DeviceTimeout,
    DeviceUnavailable,
)

__all__ = ["ShellyEnergy", "ShellyPlug", "ShellySwitchStatus"]

_LOGGER = logging.getLogger(__name__)


class ShellyEnergy(BaseModel):
    """The ``aenergy`` block of a metering switch."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    total: float = Field(description="energy since boot or reset, Wh")


class ShellySwitchStatus(BaseModel):
    """The answer of ``Switch.GetStatus``, parsed and checked (unknown keys ignored)."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    id: int
    output: bool
    source: str | None = None
    apower: float | None = Field(default=None, description="active power, W")
    voltage: float | None = None
    current: float | None = None
    aenergy: ShellyEnergy | None = None


class ShellyPlug(ActuatorBase):
    """A Shelly Gen2+ switch channel as an actuator.

    Args:
        host: hostname or IP address, optionally with ``:port``.
        switch_id: switch channel (0 on single-relay plugs).
        timeout: seconds for each HTTP request.
        password: the device's ``admin`` password if authentication is enabled.
        auto_off_s: if set, every ``on()`` asks the plug to switch itself off after
            this many seconds (``toggle_after``); call ``on()`` again to renew.
        transport: an httpx transport (tests); the network when omitted.
    """

    def __init__(
        self,
        host: str,
        switch_id: int = 0,
        timeout: float = 2.0,
        *,
        password: str | None = None,
        auto_off_s: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.host = host
        self.switch_id = switch_id
        self.timeout = timeout
        self.auto_off_s = auto_off_s
        self._password = password
        self._transport = transport
        self._client: httpx.Client | None = None

    def __repr__(self) -> str:
        return f"ShellyPlug({self.host!r}, switch_id={self.switch_id})"

    def open(self) -> None:
        """Create the HTTP client and switch the plug off.

        Raises:
            DeviceError: the plug could not be switched off; nothing is left open.
        """
        if self._client is not None:
            return
        auth = httpx.DigestAuth("admin", self._password) if self._password else None
        self._client = httpx.Client(
            base_url=f"http://{self.host}",
            timeout=self.timeout,
            auth=auth,
            transport=self._transport,
        )
        try:
            self.off()
        except BaseException:
            self._client.close()
            self._client = None
            raise

    def close(self) -> None:
        """Switch the plug off (best effort, logged) and close the HTTP client."""
        if self._client is None:
            return
        try:
            self.off()
        except DeviceError as err:
            _LOGGER.error("%r: could not switch off on close: %s", self, err)
        finally:
            self._client.close()
            self._client = None

    def on(self) -> None:
        """Switch on (with ``toggle_after`` when ``auto_off_s`` is set).

        Raises:
            DeviceError: see the module docstring.
        """
        params: dict[str, str] = {"id": str(self.switch_id), "on": "true"}
        if self.auto_off_s is not None:
            params["toggle_after"] = f"{self.auto_off_s:g}"
        was_on = self._set(params)
        _LOGGER.info("%r on (was %s)", self, "on" if was_on else "off")

    def off(self) -> None:
        """Switch off.

        Raises:
            DeviceError: see the module docstring.
        """
        was_on = self._set({"id": str(self.switch_id), "on": "false"})
        _LOGGER.info("%r off (was %s)", self, "on" if was_on else "off")

    def status(self) -> ShellySwitchStatus:
        """Read the switch's status (output, power, voltage, energy).

        Raises:
            DeviceError: see the module docstring.
        """
        body = self._rpc("Switch.GetStatus", {"id": str(self.switch_id)})
        try:
            return ShellySwitchStatus.model_validate(body)
        except ValidationError as err:
            raise DeviceProtocolError(f"{self!r}: unexpected Switch.GetStatus answer") from err

    def state(self) -> bool:
        """Whether the output is on, as reported by the plug."""
        return self.status().output

    def power_w(self) -> float | None:
        """Active power in watts; ``None`` on models without a meter."""
        return self.status().apower

    def _set(self, params: dict[str, str]) -> bool:
        body = self._rpc("Switch.Set", params)
        was_on = body.get("was_on")
        if not isinstance(was_on, bool):
            raise DeviceProtocolError(f"{self!r}: Switch.Set answered {body!r}")
        return was_on

    def _rpc(self, method: str, params: dict[str, str]) -> dict[str, Any]:
        """Call one RPC method; translate every failure into a DeviceError."""
        if self._client is None:
            raise DeviceUnavailable(f"{self!r} is not open")
        try:
            response = self._client.get(f"/rpc/{method}", params=params)
        except httpx.TimeoutException as err:
            raise DeviceTimeout(f"{self!r}: {method} timed out after {self.timeout} s") from err
        except httpx.TransportError as err:
            raise DeviceUnavailable(f"{self!r}: {method}: {err}") from err
        except httpx.HTTPError as err:
            raise DeviceProtocolError(f"{self!r}: {method}: {err}") from err
        if response.status_code == httpx.codes.UNAUTHORIZED:
            raise DeviceAuthError(f"{self!r}: {method}: wrong or missing password")
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DeviceProtocolError(
                f"{self!r}: {method}: HTTP {response.status_code}, body is not JSON"
            ) from err
        if response.status_code != httpx.codes.OK:
            detail = body if not isinstance(body, dict) else body.get("message", body)
            code = body.get("code") if isinstance(body, dict) else None
            raise DeviceProtocolError(
                f"{self!r}: {method}: HTTP {response.status_code} (code {code}): {detail}"
            )
        if not isinstance(body, dict):
            raise DeviceProtocolError(f"{self!r}: {method}: answer is not a JSON object")
        return body

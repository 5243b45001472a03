"""OctoPrint: follow and command 3D printers through OctoPrint 1.11's APIs.

* :class:`OctoPrintClient`: asyncio REST client (httpx): version, printer, job,
  connection, upload, start/pause/resume/cancel; errors translated to the
  :mod:`devices.errors` tree.
* :class:`OctoPrintFollower`: the one owner of a printer's connection: push API
  (passive login, raw ``/sockjs/websocket``), silence watchdog, reconnect with
  backoff, REST safety poll; exposes the latest :class:`PrinterSnapshot`, a stream
  of :class:`JobEvent` and :attr:`~OctoPrintFollower.job_active` (never cut power
  while true).
* :class:`SimulatedPrinter`: a follower whose printer is simulated in process
  (same snapshots and events; the demo, and tests of code that uses a follower).

Usage::

    async with OctoPrintFollower(OctoPrintClient(url, api_key)) as printer:
        async with printer.subscribe() as events:
            async for event in events:
                ...  # PrintStarted, PrintDone, LinkDown, …
"""

from devices.octoprint.client import CommandRefused, OctoPrintClient, PrinterOffline
from devices.octoprint.models import (
    ConnectionInfo,
    JobEvent,
    JobEventKind,
    JobStatus,
    LoginSession,
    PrinterFlags,
    PrinterSnapshot,
    PrinterStatus,
    Temperature,
    UploadResult,
    Version,
)
from devices.octoprint.push import JobEventStream, OctoPrintFollower
from devices.octoprint.simulated import SimulatedPrinter

__all__ = [
    "CommandRefused",
    "ConnectionInfo",
    "JobEvent",
    "JobEventKind",
    "JobEventStream",
    "JobStatus",
    "LoginSession",
    "OctoPrintClient",
    "OctoPrintFollower",
    "PrinterFlags",
    "PrinterOffline",
    "PrinterSnapshot",
    "PrinterStatus",
    "SimulatedPrinter",
    "Temperature",
    "UploadResult",
    "Version",
]

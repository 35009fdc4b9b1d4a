"""systemd's notify protocol, in a few lines of standard library.

With `Type=notify` a unit is started only once the process says READY=1, and with
`WatchdogSec=` systemd restarts a process that stops sending WATCHDOG=1 (a hung event loop).
Outside systemd (no NOTIFY_SOCKET) every call does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger("parley.systemd")


def notify(*states: str) -> bool:
    """Send `states` (e.g. "READY=1", "STATUS=...") to systemd; False when not under it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(states).encode())
    except OSError as exc:
        log.warning("could not notify systemd: %s", exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings systemd expects (half its timeout), if any."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1e6 / 2
    except ValueError:
        return None


async def watchdog() -> None:
    """Ping systemd's watchdog from the event loop until cancelled; a blocked loop stops
    the pings and systemd restarts the process."""
    interval = watchdog_interval()
    if interval is None:
        return
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)


def ready(status: str) -> None:
    notify("READY=1", f"STATUS={status}")


def stopping(status: str = "stopping") -> None:
    notify("STOPPING=1", f"STATUS={status}")

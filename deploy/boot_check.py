"""Boot the units under a real systemd and check what a deployment relies on.

A Debian 12 root made by debootstrap (cached in $PARLEY_BOOT_CACHE, default
/var/cache/parley-boot; the first run takes several minutes), this checkout installed into
it with deploy/install.sh, then booted with systemd-nspawn on a private network. Every
parley unit runs with its system-call filter in kill mode, so a call the filter does not
allow ends the process instead of failing quietly. Each check prints one line; the exit
status is 1 if any failed. Needs root, debootstrap and systemd-container:

    sudo python3 deploy/boot_check.py
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("PARLEY_BOOT_CACHE", "/var/cache/parley-boot"))
MIRROR = os.environ.get("PARLEY_BOOT_MIRROR", "http://deb.debian.org/debian")
PACKAGES = "systemd,systemd-sysv,dbus,redis-server,python3,python3-venv,curl,ca-certificates"
WORKERS = ("parley-worker@9101.service", "parley-worker@9102.service")
ADAPTERS = ("parley-web.service", "parley-telegram.service", "parley-slack.service")
UNITS = (*WORKERS, *ADAPTERS)
# What each unit may read in its credentials directory (see deploy/*.service).
CREDENTIALS = {
    "parley-worker@9101.service": {"parley_redis_url"},
    "parley-web.service": {"parley_redis_url"},
    "parley-telegram.service": {"parley_redis_url", "parley_telegram_token"},
    "parley-slack.service": {
        "parley_redis_url",
        "parley_slack_bot_token",
        "parley_slack_signing_secret",
    },
}
SETTINGS = """\
# as .env.example has it: the unit's instance name must win
PARLEY_WORKER_PORT=0
PARLEY_WEB_PORT=8080
PARLEY_LOG_FORMAT=json
"""
SECRETS = {
    "common/redis_url": "redis://127.0.0.1:6379/0",
    "telegram/token": "123456:ABCdefGhIJKlmNoPQRsTUVwxyZ",  # no network: never reachable
    "slack/bot_token": "xoxb-0000-0000-boot",
    "slack/signing_secret": "boot-check-signing-secret",
}
# Every parley unit with its filter in kill mode (SIGSYS) instead of EPERM.
KILL_MODE = "[Service]\nSystemCallErrorNumber=\n"
ASK = """
import asyncio, json, sys
import aiohttp

async def main():
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect("http://127.0.0.1:8080/r/lobby/ws",
                                   params={"name": "ann"}) as ws:
            await ws.send_json({"type": "say", "id": "q1", "text": sys.argv[1]})
            async with asyncio.timeout(90):
                async for message in ws:
                    frame = json.loads(message.data)
                    if frame["type"] == "message" and frame["kind"] == "bot":
                        print(frame["text"])
                        return

asyncio.run(main())
"""


# What the log shows after a failed check.
DIAGNOSE = (
    "systemctl --no-pager list-units 'parley*' redis-server.service; "
    "journalctl --no-pager -o short-monotonic -n 25 -u 'parley*'"
)


class Failed(Exception):
    pass


def run(*cmd: str, check: bool = True, timeout: float = 1800) -> str:
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, start_new_session=True
    )
    if check and result.returncode != 0:
        raise Failed(f"{' '.join(cmd)} exited {result.returncode}: {result.stderr[-1500:]}")
    return str(result.stdout)


def base_root() -> Path:
    """Debian 12 with systemd, Redis and Python, made once and kept."""
    root = CACHE / "debian-12"
    if (root / ".complete").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"making a Debian 12 root in {root} (once; several minutes)", flush=True)
    run("debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm", str(root), MIRROR)
    (root / ".complete").touch()
    return root


def nspawn(root: Path, *args: str) -> list[str]:
    return [
        "systemd-nspawn",
        "--quiet",
        "--register=no",  # the host's PID 1 is not systemd: no machined to register with
        "--keep-unit",
        "-D",
        str(root),
        *args,
    ]


def prepare_host() -> None:
    """nspawn keeps its mount propagation directory in /run/systemd/nspawn, which it
    refuses to clean up on a disk file system when the host's PID 1 is not systemd."""
    propagation = Path("/run/systemd/nspawn")
    propagation.mkdir(parents=True, exist_ok=True)
    if not os.path.ismount(propagation):
        run("mount", "-t", "tmpfs", "tmpfs", str(propagation))


# The host's CA certificates and pip settings, so that pip inside reaches the package
# index the way the host does (through a proxy or a mirror, if the host uses one).
HOST_PIP = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pip.conf",
    "/opt/wheels",
    "/opt/pypi",
    "/opt/pypi-more",
)


def install(root: Path) -> None:
    """deploy/install.sh inside the root, as on a server: a first install, or an upgrade."""
    binds = [f"--bind-ro={path}" for path in HOST_PIP if Path(path).exists()]
    run(
        *nspawn(
            root,
            f"--bind-ro={REPO}:/src",
            *binds,
            "--setenv=PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
            "/bin/bash",
            "/src/deploy/install.sh",
        ),
        timeout=3600,
    )


class Machine:
    """The root booted with systemd as PID 1; commands run inside its namespaces."""

    def __init__(self, root: Path) -> None:
        self.kills_before = seccomp_kills()
        self.log = open(CACHE / "boot.log", "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            # the checkout inside again, for the upgrade in place
            nspawn(root, "--boot", "--private-network", f"--bind-ro={REPO}:/src"),
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.leader = self._leader()

    def _leader(self) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for status in Path("/proc").glob("[0-9]*/status"):
                try:
                    fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines())
                except (OSError, ValueError):
                    continue
                child = fields.get("PPid", "").strip() == str(self.proc.pid)
                if child and fields.get("Name", "").strip() == "systemd":
                    return int(status.parent.name)
            time.sleep(0.5)
        raise Failed("the container's systemd did not start")

    def sh(self, command: str, check: bool = True, timeout: float = 300) -> str:
        enter = ["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-n", "-p"]
        return run(*enter, "/bin/bash", "-c", command, check=check, timeout=timeout)

    def show(self, unit: str, prop: str) -> str:
        return self.sh(f"systemctl show -P {prop} {unit}").strip()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)  # nspawn: a clean poweroff of the container
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def until(what: str, test: Callable[[], bool], seconds: float, step: float = 1.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if test():
            return time.monotonic() - started
        time.sleep(step)
    raise Failed(f"{what}: not within {seconds:.0f} s")


def configure(m: Machine) -> None:
    m.sh("systemctl is-system-running --wait || true", timeout=180)
    m.sh(f"cat > /etc/parley/parley.env <<'EOF'\n{SETTINGS}EOF")
    for name, value in SECRETS.items():
        m.sh(f"printf %s '{value}' > /etc/parley/credentials/{name}")
    for unit in ("parley-worker@.service", *ADAPTERS):
        m.sh(
            f"mkdir -p /etc/systemd/system/{unit}.d && "
            f"printf '{KILL_MODE}' > /etc/systemd/system/{unit}.d/boot-check.conf"
        )
    m.sh("systemctl daemon-reload && systemctl enable --now redis-server")


# -- the checks ------------------------------------------------------------------------


def check_start(m: Machine) -> str:
    started = time.monotonic()
    m.sh(f"systemctl start {' '.join(UNITS)}", timeout=600)  # Type=notify: waits for READY=1
    took = time.monotonic() - started
    states = {u: m.show(u, "ActiveState") for u in UNITS}
    if any(s != "active" for s in states.values()):
        raise Failed(f"not all active: {states}")
    return f"every unit active after READY=1 ({took:.0f} s for all, workers included)"


def check_exposure(m: Machine) -> str:
    """systemd's own rating of each running unit's confinement, and its main process's
    resident memory."""
    scores, memory = {}, {}
    for unit in UNITS:
        out = m.sh(f"systemd-analyze security --no-pager {unit}", check=False)
        last = out.strip().splitlines()[-1] if out.strip() else ""
        scores[unit] = float(last.split(":")[1].split()[0]) if "exposure level" in last else 99.0
        status = m.sh(f"cat /proc/{m.show(unit, 'MainPID')}/status", check=False)
        rss = [line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")]
        memory[unit] = int(rss[0]) >> 10 if rss else 0  # kB -> MiB
    worst = max(scores.values())
    if worst > 2.5:
        raise Failed(f"exposure above 2.5: {scores}")
    listed = ", ".join(f"{u.removesuffix('.service')} {scores[u]} ({memory[u]} MiB)" for u in UNITS)
    return f"exposure (RSS): {listed}"


def check_worker_ports(m: Machine) -> str:
    for port in (9101, 9102):
        body = m.sh(f"curl -sf http://127.0.0.1:{port}/healthz")
        if "ready" not in body:
            raise Failed(f"worker {port} /healthz: {body!r}")
    return "each worker serves /healthz on its instance port (the env file says 0)"


def check_question(m: Machine) -> str:
    reply = m.sh(
        f"/opt/parley/.venv/bin/python -c '{ASK}' '@parley hi there, how are you?'", timeout=180
    )
    if not reply.strip():
        raise Failed("no reply")
    return f"a question in the web room is answered by a worker: {reply.strip()!r}"


def check_credentials(m: Machine) -> str:
    for unit, expected in CREDENTIALS.items():
        seen = set(m.sh(f"ls /run/credentials/{unit}/").split())
        if seen != expected:
            raise Failed(f"{unit} sees credentials {sorted(seen)}, expected {sorted(expected)}")
    return "each unit sees only its own credentials"


def check_state_directories(m: Machine) -> str:
    homes = {u: m.show(u, "StateDirectory") for u in UNITS}
    if len(set(homes.values())) != len(homes):
        raise Failed(f"shared state directories: {homes}")
    # Restarts re-own a directory shared between dynamic users: the others lost it.
    m.sh("systemctl restart parley-web parley-worker@9102", timeout=600)
    for unit, home in homes.items():
        user = m.sh(f"stat -c %u /proc/{m.show(unit, 'MainPID')}").strip()
        owner = m.sh(f"stat -c %u /var/lib/private/{home}").strip()
        if m.show(unit, "ActiveState") != "active" or user != owner:
            raise Failed(f"{unit} (uid {user}) and its {home} (owner {owner}) after restarts")
    return "a state directory per unit, owned by the unit's own user after restarts"


def check_watchdog(m: Machine) -> str:
    before = {u: int(m.show(u, "WatchdogTimestampMonotonic")) for u in UNITS}
    time.sleep(20)
    stale = [u for u in UNITS if int(m.show(u, "WatchdogTimestampMonotonic")) <= before[u]]
    if stale:
        raise Failed(f"no watchdog ping in 20 s from {stale}")
    return "every unit pings the watchdog"


def check_hung_process(m: Machine) -> str:
    unit = "parley-telegram.service"
    pid = m.show(unit, "MainPID")
    if pid == "0":
        raise Failed(f"{unit} is not running")
    m.sh(f"kill -STOP {pid}")
    took = until(
        "a stopped process restarted by the watchdog",
        lambda: (
            m.show(unit, "MainPID") not in (pid, "0") and m.show(unit, "ActiveState") == "active"
        ),
        90,
    )
    return f"a SIGSTOPped process is restarted by the watchdog ({took:.0f} s)"


def check_reload(m: Machine) -> str:
    unit = WORKERS[0]
    pid = m.show(unit, "MainPID")
    m.sh(f"systemctl reload {unit}")
    until(
        "the model reloaded",
        lambda: "model reloaded" in m.sh(f"journalctl -u {unit} -o cat --no-pager", check=False),
        180,
        2,
    )
    if m.show(unit, "MainPID") != pid:
        raise Failed("reload restarted the worker")
    return "reload loads the model again in the same process"


def check_redis_restart(m: Machine) -> str:
    pids = {u: m.show(u, "MainPID") for u in UNITS}
    m.sh("systemctl restart redis-server")
    time.sleep(15)
    changed = [u for u in UNITS if m.show(u, "MainPID") != pids[u]]
    if changed:
        raise Failed(f"a Redis restart restarted {changed}")
    check_question(m)
    return "a Redis restart kills no process, and the next question is answered"


def check_unreachable_platforms(m: Machine) -> str:
    restarts = {u: m.show(u, "NRestarts") for u in ADAPTERS[1:]}  # Telegram and Slack
    time.sleep(30)
    for unit, before in restarts.items():
        if m.show(unit, "NRestarts") != before or m.show(unit, "ActiveState") != "active":
            raise Failed(f"{unit} restarts while the platform is unreachable")
    status = m.sh("systemctl status --no-pager parley-slack parley-telegram", check=False)
    if "unreachable" not in status:
        raise Failed("the status line does not say the platform is unreachable")
    return "unreachable platforms are waited for, not crash-looped, and the status says so"


def seccomp_kills() -> list[str]:
    """The kernel's audit lines for processes its system-call filters killed (type 1326,
    with the call's number: `ausyscall NUMBER` or the kernel's syscall table names it)."""
    lines = run("dmesg", check=False).splitlines()
    return [line for line in lines if "type=1326" in line and "sig=31" in line]


def check_no_filter_kills(m: Machine) -> str:
    killed = seccomp_kills()[len(m.kills_before) :]
    if killed:
        calls = {part for line in killed for part in line.split() if part.startswith("syscall=")}
        raise Failed(f"{len(killed)} processes killed by their filter: {', '.join(sorted(calls))}")
    return "no process was killed by its system-call filter (kill mode)"


def check_upgrade(m: Machine) -> str:
    pid = m.show(WORKERS[0], "MainPID")
    m.sh("PARLEY_SKIP_PIP=1 bash /src/deploy/install.sh", timeout=600)
    until(
        "the upgraded units active",
        lambda: all(m.show(u, "ActiveState") == "active" for u in UNITS),
        300,
        2,
    )
    if m.show(WORKERS[0], "MainPID") == pid:
        raise Failed("install.sh did not restart the running worker")
    return "install.sh upgrades in place and restarts the running units"


def check_stop(m: Machine) -> str:
    started = time.monotonic()
    m.sh("systemctl stop parley.target", timeout=300)
    took = time.monotonic() - started
    running = [u for u in UNITS if m.show(u, "ActiveState") not in ("inactive", "failed")]
    if running:
        raise Failed(f"stop parley.target returned with {running} still running")
    failed = [u for u in UNITS if m.show(u, "Result") != "success"]
    if failed:
        raise Failed(f"did not stop cleanly: {failed}")
    return f"stop parley.target returns when every unit has stopped ({took:.1f} s)"


CHECKS = [
    check_start,
    check_exposure,
    check_worker_ports,
    check_question,
    check_credentials,
    check_state_directories,
    check_watchdog,
    check_reload,
    check_redis_restart,
    check_unreachable_platforms,
    check_hung_process,
    check_upgrade,
    check_stop,
    check_no_filter_kills,
]


def main() -> int:
    if os.geteuid() != 0:
        print("boot_check: run it as root", file=sys.stderr)
        return 2
    missing = [t for t in ("debootstrap", "systemd-nspawn", "nsenter") if not shutil.which(t)]
    if missing:
        print(
            f"boot_check: missing {' '.join(missing)} (apt-get install debootstrap "
            "systemd-container)",
            file=sys.stderr,
        )
        return 2
    try:
        return boot_and_check()
    except (Failed, subprocess.TimeoutExpired) as exc:
        print(f"FAIL  {exc}", flush=True)
        return 1


def boot_and_check() -> int:
    prepare_host()
    installed = CACHE / "installed"
    if not (installed / ".complete").exists():
        shutil.rmtree(installed, ignore_errors=True)
        run("cp", "-a", str(base_root()), str(installed))
    print("installing this checkout with deploy/install.sh", flush=True)
    install(installed)  # after the first run, an upgrade in place
    booted = CACHE / "booted"
    shutil.rmtree(booted, ignore_errors=True)
    run("cp", "-a", "--reflink=auto", str(installed), str(booted))
    machine = Machine(booted)
    failures = 0
    try:
        configure(machine)
        for check in CHECKS:
            try:
                print(f"ok    {check(machine)}", flush=True)
            except (Failed, subprocess.TimeoutExpired) as exc:
                failures += 1
                print(f"FAIL  {check.__name__}: {exc}", flush=True)
                print(machine.sh(DIAGNOSE, check=False), flush=True)
    finally:
        machine.stop()
        shutil.rmtree(booted, ignore_errors=True)  # the booted copy; the installed root stays
    print(f"{len(CHECKS) - failures} of {len(CHECKS)} checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

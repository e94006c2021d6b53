"""`wattproof demo`: the whole system as it stands, end to end, on the embedded defaults.

A verifier (its own process, SQLite; or PostgreSQL with --database, several worker
processes with --workers) on 127.0.0.1 and five blank virtual boards
(MicroPython with a 96 KB heap and nothing else): two producers (solar on an SDM120,
solar on an S0 meter), two consumers (a household on a PZEM-004T, a household with solar
on an SDM630) and an EV charger. `wattproof provision` turns them into commissioned
devices as a technician would: firmware copied over their serial consoles, keys born on
the boards, enrollment signed by an installer, a first packet each. Then the boards run
the gateway from their own flash for simulated hours at high speed, sign packets and
deliver them. The demo replays a stored packet (idempotent), sends a forged copy
(refused), checks every device's chain and the ledger, prints a summary, and exits
non-zero if anything it showed failed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from hardware import sim
from hardware.flash import files
from provisioning import enrollment
from provisioning.client import VerifierClient
from provisioning.provision import set_broker_password
from verifier import storage
from verifier.charging import ocpi
from verifier.devices import records
from verifier.log import note
from verifier.wire import merkle, strict_cbor
from verifier.wire.packet import GENESIS, decode_header, decode_packet
from wattproof.broker import LocalBroker

BOARDS = [
    ("solar-roof-1", "devkitc-sdm120"),
    ("solar-roof-2", "devkitc-s0"),
    ("home-1", "devkitc-pzem004t"),
    ("home-2", "devkitc-sdm630"),
    ("charger-1", "devkitc-charger"),
]
ROLES = {  # device attributes for provisioning: role, capacity (W), technology
    "devkitc-charger": ("charger", 22_000, None),
    "devkitc-pzem004t": ("consumer", 17_000, None),
    "devkitc-sdm630": ("consumer", 17_000, None),
    "devkitc-sdm120": ("producer", 8_000, "solar-pv"),
    "devkitc-s0": ("producer", 8_000, "solar-pv"),
}
PRODUCERS = ("solar-roof-1", "solar-roof-2")
WITNESSES = ("witness.example/w1", "witness.example/w2")
# The boards live in yesterday's simulated daylight, fast: their network time is that far
# behind the laptop's, which provisioning is told to accept.
CLOCK_TOLERANCE_S = 4 * 86400
# A run's boards halt half a reading interval after its last reading is due: that reading
# is taken at full speed, and the next is a minute of real time away (VirtualBoard).
HALT_AFTER_S = 30
CLOCK_MARGIN_S = 600  # the run ends this long before this computer's clock (the verifier takes no future)
MAX_HOURS = 7 * 24


def plan_time(now: int, hours: float, last: int | None) -> tuple[int, float, str]:
    """(epoch, hours to run, what to say): simulated time that ends before now. A new run
    starts at 06:00 UTC (boards provisioned, measuring from 07:00: the household with solar
    draws its morning peak, then exports) a day before the latest such morning its hours fit
    in, so that reruns in the same work folder have a day to go on in at any hour of the day;
    a rerun goes on from where the last one stopped (a board's clock never goes back), and
    runs the hours that fit before now, in whole quarter hours, saying so."""
    extra = 3600 + HALT_AFTER_S + CLOCK_MARGIN_S  # the provisioning hour, the halt, the margin
    wanted = round(hours * 3600)
    if last is None:
        latest = now - wanted - extra
        epoch = latest // 86400 * 86400 + 6 * 3600
        return (epoch if epoch <= latest else epoch - 86400) - 86400, hours, ""
    epoch = (last // 60 + 2) * 60
    room = now - extra - epoch
    if room >= wanted:
        return epoch, hours, ""
    fit = max(0, room) // 900 * 900 / 3600
    return (
        epoch,
        fit,
        (
            f"the boards' clocks stopped at {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime(last))} last run: {fit:g} of"
            f" the {hours:g} hours asked fit before this computer's clock (a new --workdir starts further back)"
        ),
    )


class DemoFailure(RuntimeError):
    pass


def _say(who: str, line: str) -> None:
    print(f"[{who:12}] {line}", flush=True)


def _operator_tokens(work: Path) -> dict[str, str]:
    """The operator's token secret and the tokens it accepts (the virtual vehicles'), private to
    it: the verifier bills CDRs to them, the charger gets its own key derived from the secret."""
    secret = work / "operator.token-secret"
    if not secret.exists():
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
    accepted = [{"uid": f"04A2B3C4D5E6{n:02X}", "contract_id": f"FR-WTP-C{n:08d}-D"} for n in range(256)]
    (work / "operator.tokens.json").write_text(json.dumps(accepted, indent=1) + "\n")
    return {
        "WATTPROOF_TOKEN_SECRET_FILE": str(secret),
        "WATTPROOF_TOKENS_FILE": str(work / "operator.tokens.json"),
    }


def log_key_file(work: Path, database: str | None, kept: bool) -> Path:
    """Where the demo's verifier keeps the log key. A SQLite demo's key lies beside its file in
    the work folder and goes with it. A PostgreSQL database outlives the run, so its key must
    too (a log with its key deleted can never sign again): unless the work folder is kept
    (--workdir), the key lies in the user's state folder, named after the database, and the
    next demo on the same database signs with it again."""
    if database is None:
        return work / "verifier.sqlite.logkey"  # the SQLite default: DATABASE + ".logkey"
    if kept:
        return work / "verifier.logkey"
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "wattproof" / "demo-log-keys"
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = hashlib.sha256(storage.describe(database).encode()).hexdigest()[:16]
    return state / f"{name}.logkey"


def _where(target: str, log_key: Path) -> list[str]:
    """The options that name the verifier's database (and a PostgreSQL log's key file)."""
    return ["--database", target, "--log-key", str(log_key)] if storage.is_url(target) else ["--db", target]


def _log_verifier(target: str, log_key: Path) -> note.Verifier:
    """The log's key, made before the verifier first starts (as `wattproof serve` would make
    it), so that the witnesses know the log they cosign for."""
    from verifier import settings

    config = settings.load(overrides={"DATABASE": target, "LOG_KEY_FILE": str(log_key)})
    return settings.log_signer(config, create=True).verifier()


def _start_verifier(
    target: str, log_key: Path, workers: int, work: Path, witnesses: list[tuple[str, note.Verifier]]
) -> tuple[subprocess.Popen[str], str]:
    env = {
        **os.environ,
        **_operator_tokens(work),
        "WATTPROOF_CERTIFICATE_INTERVAL_S": "0",  # the demo issues certificates itself, at a known step
        "WATTPROOF_WITNESSES": json.dumps([f"{url} {key}" for url, key in witnesses]),
        "WATTPROOF_WITNESS_INTERVAL_S": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "wattproof.cli", "serve", *_where(target, log_key), "--port", "0"]
        + ["--workers", str(workers)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    if not first.startswith("verifier listening on "):
        proc.kill()
        raise DemoFailure(f"verifier did not start: {first}")
    threading.Thread(target=_relay, args=(proc.stdout,), daemon=True).start()
    return proc, first.rsplit(" ", 1)[1]


def _wattproof(*args: str) -> str:
    """An operator's `wattproof` command at the verifier's console; its output, or a DemoFailure."""
    result = subprocess.run([sys.executable, "-m", "wattproof.cli", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise DemoFailure(f"wattproof {args[0]} {args[1]}: {(result.stderr or result.stdout).strip()[-300:]}")
    return result.stdout


class Api:
    """The verifier's HTTP API with one API key, as an operator's script uses it."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.client = VerifierClient(url, token, timeout=60)

    def get(self, path: str) -> Any:
        status, answer = self.client.request("GET", path)
        if status != 200:
            raise DemoFailure(f"GET {path}: HTTP {status} {str(answer)[:300]}")
        return answer

    def file(self, path: str) -> bytes:
        status, answer = self.client.request("GET", path, raw=True)
        if status != 200 or not isinstance(answer, bytes):
            raise DemoFailure(f"GET {path}: HTTP {status} {str(answer)[:300]}")
        return answer

    def post(self, path: str, body: Any = None, again: bool = False) -> Any:
        """A refusal is a DemoFailure naming it, except, with again, a 409 for what an earlier
        run on the same database made already (None then)."""
        data = None if body is None else json.dumps(body).encode()
        status, answer = self.client.request("POST", path, data)
        if status < 300:
            return answer
        if again and status == 409:
            return None
        raise DemoFailure(f"POST {path}: HTTP {status} {str(answer)[:300]}")

    def key(self, name: str, role: str, **scope: str) -> str:
        """A new API key (admin only), its token."""
        return str(self.post("/v1/keys", {"name": name, "role": role, **scope})["token"])

    def device(self, device_id: str) -> dict[str, Any] | None:
        status, answer = self.client.request("GET", f"/v1/devices/{device_id}")
        if status == 404:
            return None
        if status != 200:
            raise DemoFailure(f"GET /v1/devices/{device_id}: HTTP {status} {str(answer)[:300]}")
        return dict(answer)

    def readings(self, device_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor = ""
        while True:
            page = self.get(f"/v1/devices/{device_id}/readings?from=0&limit=5000{cursor}")
            out += page["readings"]
            if page["next_cursor"] is None:
                return out
            cursor = f"&cursor={page['next_cursor']}"

    def energy(self, device_id: str, start: int, end: int) -> list[dict[str, Any]]:
        return list(self.get(f"/v1/devices/{device_id}/energy?from={start}&to={end}&interval=1h")["intervals"])

    def span(self) -> tuple[int, int] | None:
        """The first and the last reading time of the boards' packets; None before any."""
        ends: list[int] = []
        for device_id, _ in BOARDS:
            found = self.device(device_id)
            if found is None or found["last_seq"] is None:
                continue
            for seq in (0, found["last_seq"]):
                ends += [self.get(f"/v1/packets/{device_id}/{seq}")["header"][k] for k in ("first_ts", "last_ts")]
        return (min(ends), max(ends)) if ends else None


ACCEPTED = re.compile(r"accepted (\S+) #\d+: (\d+) readings")
PROGRESS_EVERY = 25  # accepted packets between two progress lines


def _relay(stream: IO[str], who: str = "verifier") -> None:
    """The verifier's (or the bridge's) log lines, the per-packet acceptances folded into a
    progress line every few packets (the rest, refusals and duplicates included, as they come)."""
    packets, readings, devices = 0, 0, set()
    for line in stream:
        found = ACCEPTED.search(line)
        if found is None:
            _say(who, line.rstrip())
            continue
        packets, readings = packets + 1, readings + int(found.group(2))
        devices.add(found.group(1))
        if packets % PROGRESS_EVERY == 0:
            _say(who, f"{packets} packets accepted so far ({readings:,} readings from {len(devices)} devices)")


def _post(url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """A packet sent as a board sends it (no API key), through the verifier's client."""
    status, answer = VerifierClient(url, timeout=10).request("POST", "/v1/packets", body, "application/cbor")
    return status, answer


def _wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def run(
    hours: float = 10.0,
    speed: float = 1800.0,
    workdir: Path | None = None,
    database: str | None = None,
    workers: int = 1,
    serve: bool = False,
    transport: str = "http",
) -> int:
    """The demo; database (a postgresql:// URL) replaces the SQLite file in the work folder,
    workers runs that many verifier processes; serve keeps the verifier and its pages up
    after the summary, until Ctrl-C; transport "mqtt" has the boards publish their packets to
    a local mosquitto that a `wattproof mqtt` bridge takes them from."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wattproof-demo-") as tmp:
        work = workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        db_path = database or str(work / "verifier.sqlite")
        key_file = log_key_file(work, database, kept=workdir is not None)
        log_key = _log_verifier(db_path, key_file)
        witnesses = [_witness(work, name, str(log_key)) for name in WITNESSES]
        proc, url = _start_verifier(db_path, key_file, workers, work, [(w[1], w[2]) for w in witnesses])
        link = Mqtt.start(work, _where(db_path, key_file)) if transport == "mqtt" else None
        helpers = [w[0] for w in witnesses] + ([] if link is None else [link.bridge])
        shown = storage.describe(db_path) + " (PostgreSQL)" if database else "verifier.sqlite (SQLite, WAL)"
        _say("demo", f"verifier on {url} ({workers} worker{'s' if workers > 1 else ''}), database {shown}")
        if database:
            _say("demo", f"the log's key is kept with the database's life, at {key_file}")
        _say("demo", f"witnesses {', '.join(WITNESSES)} cosign its checkpoints")
        if link is not None:
            _say("demo", f"the boards publish to mosquitto on {link.broker.url}; a `wattproof mqtt` bridge ingests")
        failures: list[str] = []
        sites: list[tuple[str, sim.Site]] = []
        os.environ["WATTPROOF_VIRTUAL_BOARDS"] = str(work / "boards")  # this run's boards only
        try:
            # The operator's first admin key is made at the verifier's console; every other
            # key and every action after it goes through the HTTP API.
            admin = _wattproof("keys", "create", "--role", "admin", "--name", "demo-operator",
                               *_where(db_path, key_file)).strip()  # fmt: skip
            api = Api(url, admin)
            # Simulated time starts at 06:00 UTC (measuring from 07:00) far enough back for the hours asked,
            # or where a previous run in the same workdir stopped: a board's clock never goes
            # back, and no run reaches this computer's clock (plan_time).
            span = api.span()
            epoch, hours, cut = plan_time(int(time.time()), hours, None if span is None else span[1])
            if cut:
                _say("demo", cut)
            _say(
                "demo",
                "the boards live in simulated time from "
                + time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(epoch))
                + ": their clocks read behind this computer's, on purpose",
            )
            for device_id, profile in BOARDS:  # blank boards, at the speed of a technician's bench
                site = sim.Site(sim.load_profile(profile), work / device_id, "", "", virtual_epoch=epoch, blank=True)
                site.start()
                sites.append((device_id, site))
            installer_key, installer_name = _installer(api, work)
            token = api.key("demo-installer", "installer", installer=installer_name)
            _provision(sites, url, token, installer_key, work, keep=workdir is not None, link=link)
            for _, site in sites:  # now measuring, fast
                site.close()
            sites = []
            # Measuring starts an hour of simulated time after provisioning began (it takes
            # seconds) and stops after exactly `hours`: each board's clock starts when its
            # firmware first reads it and halts at the end, so that every run of the same
            # arguments gives the same readings.
            start = epoch + 3600
            for device_id, profile in BOARDS if hours > 0 else ():  # no hour fits: nothing more to measure
                site = sim.Site(
                    sim.load_profile(profile),
                    work / device_id,
                    "",
                    "",
                    speed=speed,
                    virtual_epoch=start,
                    blank=True,
                    halt_at=start + round(hours * 3600) + HALT_AFTER_S,
                    clock_from_boot=True,
                )
                site.start()
                sites.append((device_id, site))
            first_checkpoint = _get(url, "/v1/ledger/checkpoint")
            run_s = hours * 3600 / speed
            if sites:
                _say("demo", f"{len(sites)} boards measure {hours:g} simulated hours at {speed:g}x ({run_s:.0f} s)")
            else:
                _say("demo", "no simulated hour to measure this run: the rest runs on what the ledger holds")
            end = start + round(hours * 3600) + HALT_AFTER_S
            if sites and not _wait(lambda: all(s.board.virtual_now() >= end for _, s in sites), run_s * 3 + 60):
                failures.append("the boards' simulated time did not reach the end of the run")
            for _, site in sites:  # all stop measuring first, then each delivers what it holds
                _stop(site)
            for device_id, site in sites:
                if not _drain(site):
                    failures.append(f"{device_id}: backlog not delivered")
            failures += _tamper_checks(api)
            _accounts(api)
            failures += _certificates(api)
            failures += _trade_and_match(api)
            failures += _community(api)
            failures += _cdrs(url, admin, work)
            failures += _provenance(api, work, log_key, [w[2] for w in witnesses])
            failures += _ledger_checks(api, first_checkpoint, db_path, key_file, [w[2] for w in witnesses])
            report = _report(api, work)
        except (DemoFailure, OSError) as e:
            failures.append(str(e) or type(e).__name__)
            report = []
        finally:
            for _, site in sites:
                site.close()
            if not serve or failures:
                _stop_all(proc, helpers, link)
        print()
        print("summary")
        print(
            f"  {'device':14}{'packets':>8}{'readings':>9}{'import kWh':>12}{'export kWh':>12}{'generated':>11}"
            "  chain / sessions"
        )
        for row in report:
            generated = "-" if row["generation"] is None else f"{row['generation']:.2f}"
            print(
                f"  {row['device']:14}{row['packets']:>8}{row['readings']:>9}{row['import']:>12.2f}"
                f"{row['export']:>12.2f}{generated:>11}  {row['chain']}{row['sessions']}"
            )
            if row["hours_off"]:
                failures.append(f"{row['device']}: {row['hours_off']}")
            if row["chain"] != "unbroken":
                failures.append(f"{row['device']}: chain broken")
            if row["packets"] == 0:
                failures.append(f"{row['device']}: no packet accepted")
        print(f"  elapsed {time.monotonic() - started:.1f} s")
        if failures:
            print("FAILED:")
            for f in failures:
                print(f"  - {f}")
            return 1
        print("demo OK")
        if serve:
            _serve_pages(proc, helpers, api, url, work, kept=workdir is not None, link=link)
        return 0


def _serve_pages(
    proc: subprocess.Popen[str],
    helpers: list[subprocess.Popen[str]],
    api: Api,
    url: str,
    work: Path,
    kept: bool = True,
    link: Mqtt | None = None,
) -> None:
    """Keeps the verifier up for a person to look at its pages, signed in with an admin key
    of their own (written to the work folder too, named for its role), until Ctrl-C or SIGTERM."""
    key = api.key("demo-admin (web pages)", "admin")
    (work / "admin-key.txt").write_text(key + "\n")
    (work / "admin-key.txt").chmod(0o600)
    print()
    print(f"pages     {url}/  (sign in with the admin API key {key}; also in {work / 'admin-key.txt'})")
    print("          the verifier keeps running; Ctrl-C stops it", flush=True)
    if not kept:
        print("          this run's folder (its database, keys and files) goes when it stops:"
              " `wattproof demo --serve --workdir DIR` keeps them", flush=True)  # fmt: skip
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5) and proc.poll() is None:
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop_all(proc, helpers, link)
        print("verifier stopped")


def _stop_all(proc: subprocess.Popen[str], helpers: list[subprocess.Popen[str]], link: Mqtt | None) -> None:
    """The verifier, the witnesses and the bridge, then the broker."""
    for p in [proc, *helpers]:
        p.terminate()
        p.wait(timeout=10)
    if link is not None:
        link.broker.stop()


class Mqtt:
    """The boards' MQTT side: a local mosquitto with the production rules (password file,
    ACL) and one `wattproof mqtt` bridge with its own user; each board gets its password at
    provisioning (--broker-passwords). A rerun in the same folder keeps the broker's users."""

    def __init__(self, broker: LocalBroker, bridge: subprocess.Popen[str]) -> None:
        self.broker, self.bridge = broker, bridge

    @classmethod
    def start(cls, work: Path, where: list[str]) -> Mqtt:
        folder = work / "broker"
        folder.mkdir(parents=True, exist_ok=True)
        secret = folder / "bridge.password"
        if not secret.exists():
            fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(24) + "\n")
        broker = LocalBroker(folder, {"bridge": secret.read_text().strip()})
        if broker.passwords.exists():  # a rerun: the boards' lines are there; the bridge's is set again
            set_broker_password(broker.passwords, "bridge", secret.read_text().strip())
        try:
            broker.start()
        except (OSError, RuntimeError) as e:
            raise DemoFailure(f"the MQTT broker: {e}") from None
        broker.reload_on_change()  # each board's password, as provisioning writes it
        bridge = subprocess.Popen(
            [sys.executable, "-m", "wattproof.cli", "mqtt", *where, "--broker", broker.url, "--user", "bridge",
             "--password-file", str(secret), "--client-id", "demo-bridge"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        )  # fmt: skip
        assert bridge.stdout is not None
        first = bridge.stdout.readline().strip()
        if not first.startswith("bridge from "):
            bridge.kill()
            broker.stop()
            raise DemoFailure(f"the MQTT bridge did not start: {first}")
        threading.Thread(target=_relay, args=(bridge.stdout, "bridge"), daemon=True).start()
        return cls(broker, bridge)


def _provision(
    sites: list[tuple[str, sim.Site]], url: str, token: str, key: Path, work: Path, keep: bool, link: Mqtt | None
) -> None:
    """`wattproof provision` for each board, all at once, as a technician runs it; over MQTT
    each board gets its broker password (the broker reads its password file when it changes)."""
    procs = []
    for device_id, site in sites:
        assert site.console is not None
        role, capacity, technology = ROLES[site.profile["name"]]
        args = [
            *("--port", site.console.meter_port, "--profile", site.profile["name"], "--device-id", device_id),
            *("--role", role, "--capacity-w", str(capacity), "--grid-area", "demo-grid"),
            *("--location", "48.8566,2.3522", "--verifier", url, "--api-key", token),
            *("--installer", key.stem, "--installer-key", str(key), "--out", str(work / "commissioning")),
            *("--clock-tolerance", str(CLOCK_TOLERANCE_S)),
            *(("--technology", technology) if technology else ()),
            *(("--charge-point", str(_charge_point(work, device_id))) if role == "charger" else ()),
            *(("--token-secret", str(work / "operator.token-secret")) if role == "charger" else ()),
            *(("--broker", link.broker.url, "--broker-passwords", str(link.broker.passwords)) if link else ()),
        ]
        proc = subprocess.Popen(
            [sys.executable, "-m", "wattproof.cli", "provision", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append((device_id, proc))
    relays = [threading.Thread(target=_relay_provision, args=(d, p, keep)) for d, p in procs]
    for r in relays:
        r.start()
    for r in relays:
        r.join()
    failed = [d for d, p in procs if p.wait() != 0]
    if failed:
        raise DemoFailure(f"provisioning failed for {', '.join(failed)}")


def _charge_point(work: Path, device_id: str) -> Path:
    """The charge point a technician describes for a charger: where it is, its EVSE and connector."""
    path = work / f"{device_id}.charge-point.json"
    n = device_id.rsplit("-", 1)[-1]
    cp = {
        "location_id": f"DEMO-LOC-{n}",
        "name": "Demo charging bay",
        "address": "1 place de l'Hotel de Ville",
        "city": "Paris",
        "postal_code": "75004",
        "country": "FRA",
        "evse_uid": f"DEMO-EVSE-{n}",
        "evse_id": f"FR*WTP*E{int(n) if n.isdigit() else 1:04d}*1",
        "connector_id": "1",
        "connector_standard": "IEC_62196_T2",
        "connector_format": "SOCKET",
        "power_type": "AC_3_PHASE",
    }
    path.write_text(json.dumps(cp, indent=2) + "\n")
    return path


def _cdrs(url: str, admin: str, work: Path) -> list[str]:
    """The chargers' CDRs as a mobility service provider's system reads them over OCPI 2.2.1;
    the first is written to the work folder."""
    found: list[dict[str, Any]] = []
    path = "/ocpi/2.2.1/cdrs"
    headers = {"Authorization": "Token " + base64.b64encode(admin.encode()).decode()}
    while path:
        req = urllib.request.Request(url + path, headers=headers)
        with urllib.request.urlopen(req, timeout=30) as resp:
            found += json.loads(resp.read())["data"]
            link = resp.headers.get("Link", "")
        path = link[link.index("/ocpi/") : link.index(">")] if link else ""
    wrong = [f"CDR {c['id']}: {e}" for c in found for e in ocpi.field_errors(c)]
    if found:
        name = f"cdr-session-{found[0]['session_id'][:8]}.json"
        (work / name).write_text(json.dumps(found[0], indent=2) + "\n")
        billed = sum(1 for c in found if c["cdr_token"]["contract_id"].startswith("FR-WTP-C"))
        _say("ocpi", f"{len(found)} CDRs over OCPI 2.2.1, {billed} billed to a token; the first written to {name}")
    return wrong


def _witness(work: Path, name: str, log_vkey: str) -> tuple[subprocess.Popen[str], str, note.Verifier]:
    """A witness of the demo's log; its key and state are kept in the work folder, so a rerun
    in the same --workdir has the same witnesses (and their memory of the log's size)."""
    path = work / f"{name.split('/')[-1]}.witness-key"
    if path.exists():
        key = note.Signer.parse(path.read_text().strip())
    else:
        key = note.Signer.generate(name, note.ALG_COSIGNATURE_V1)
        path.write_text(str(key) + "\n")
        path.chmod(0o600)
    proc = subprocess.Popen(
        [sys.executable, "-m", "wattproof.cli", "witness", "serve", "--key", str(path), "--state",
         str(work / f"{name.split('/')[-1]}.witness.sqlite"), "--log", log_vkey, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if " listening on " not in line:
        raise DemoFailure(f"witness {name} did not start: {line.strip()}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # a full pipe would block it
    return proc, line.split()[-1], key.verifier()


def _provenance(api: Api, work: Path, log_key: note.Verifier, keys: list[note.Verifier]) -> list[str]:
    """The witnesses cosign the checkpoint that commits the registry's state; then one
    provenance certificate of each kind is fetched over the API, written to the work folder
    and checked as an auditor would, offline."""
    from verifier.provenance import checks

    failures: list[str] = []
    paths: dict[str, str] = {}
    readings = api.get("/v1/devices/solar-roof-1/readings?from=0&limit=50")["readings"]
    meter = next((r for r in readings if r["kind"] == "meter"), None)
    if meter is not None:
        paths["reading"] = f"/v1/devices/solar-roof-1/readings/{meter['number'] + 5}/certificate"
        paths["packet"] = "/v1/packets/solar-roof-1/0/certificate"
    issued = api.get("/v1/certificates?limit=1")["bundles"]
    if issued:
        paths["certificate"] = f"/v1/certificates/{issued[0]['issuance_ledger_index']}/provenance"
    stopped = [s for s in api.get("/v1/devices/charger-1/sessions?from=0")["sessions"]
               if s["stop"] is not None and s["source"] == "board"]  # fmt: skip
    if stopped:
        paths["session"] = f"/v1/devices/charger-1/sessions/{stopped[0]['session_id']}/certificate"
    made = {kind: api.file(path) for kind, path in paths.items()}  # the registry's state is committed
    # The witnesses cosign the checkpoint that commits it (the verifier asks them every second);
    # the files are fetched again once it carries both cosignatures.
    if not _wait(lambda: _cosigned(api) >= len(keys), 30):
        failures.append("the witnesses did not cosign the latest checkpoint within 30 s")
    made = {kind: api.file(path) for kind, path in paths.items()}
    lines = _get(api.url, "/v1/ledger/checkpoint").decode().rstrip("\n").split("\n")
    _say("witness", f"{_cosigned(api)} of {len(keys)} witnesses cosigned the checkpoint of size {lines[1]}:")
    for line in lines:
        print(f"    {line[:100]}")
    for kind in ("reading", "packet", "certificate", "session"):
        if kind not in made:
            _say("auditor", f"no {kind} certificate: none to prove yet (a longer run has one: --hours)")
            continue
        path = work / f"provenance-{kind}.json"
        path.write_bytes(made[kind])
        try:
            report = checks.verify(made[kind], log_key, keys)
        except checks.Refused as e:
            failures.append(f"provenance certificate {path.name}: {e}")
            continue
        _say("auditor", f"{path.name} ({len(made[kind]):,} bytes, {len(report.steps)} steps): VERIFIED"
             f" {report.verdict[:140]}")  # fmt: skip
    _say("auditor", f"check one yourself: wattproof verify {work / 'provenance-session.json'} --log-key"
         f" {log_key} " + " ".join(f"--witness {k}" for k in keys))  # fmt: skip
    return failures


def _cosigned(api: Api) -> int:
    """How many witnesses' cosignatures the latest checkpoint carries."""
    served = _get(api.url, "/v1/ledger/checkpoint").decode()
    return sum(1 for line in served.split("\n") if line.startswith("\u2014 witness.example/"))


def _relay_provision(device_id: str, proc: subprocess.Popen[str], keep: bool) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if line.startswith(f"[{device_id}] ") and not line.endswith(" ...") and "%)" not in line:
            said = line.split("] ", 1)[1]
            if not keep and said.startswith("step 9/9 report:"):
                said = "step 9/9 report: written (this run's folder goes at the end: --workdir DIR keeps it)"
            _say(device_id, said)


def _installer(api: Api, work: Path) -> tuple[Path, str]:
    """The operator registers this run's installer key over the API; the key file the
    installer provisions with."""
    from provisioning.provision import write_installer_key

    installer = enrollment.Installer.generate(f"demo-installer-{int(time.time())}")
    api.post("/v1/installers", {"name": installer.name, "public_key": base64.b64encode(installer.public_key).decode()})
    path = work / f"{installer.name}.pem"
    write_installer_key(path, installer)
    return path, installer.name


def _certificates(api: Api) -> list[str]:
    """An operator issues the complete hours' certificates over the API; each producer's
    bundles must be exactly its measured generation of each hour from its first bundle to
    its last."""
    answer = api.post("/v1/certificates/issue")
    _say(
        "certificates",
        f"issued {answer['issued']} bundles, {answer['issued_wh']} Wh ({answer['skipped']} hours not issued:"
        " partial, interpolated, not complete or without generation)",
    )
    failures = []
    for device_id in PRODUCERS:
        bundles = api.get(f"/v1/certificates?device_id={device_id}&from=0&limit=1000")["bundles"]
        issued: dict[int, int] = {}  # per hour: its bundles, however they were split since
        for b in bundles:
            hour = b["production_starting_interval"]
            issued[hour] = issued.get(hour, 0) + b["bundle_quantity"]
        for hour in api.energy(device_id, min(issued), max(issued) + 3600) if issued else []:
            expected = hour["generation_wh"] if hour["quality"] == "measured" else 0
            if issued.get(hour["start"], 0) != expected:
                failures.append(f"{device_id} {hour['start_time']}: issued {issued.get(hour['start'], 0)} Wh,"
                                f" measured {expected} Wh")  # fmt: skip
        shown = ", ".join(f"{_iso(t)[11:16]} {q}" for t, q in sorted(issued.items()))
        _say("certificates", f"{device_id}: {len(issued)} hours, {sum(issued.values())} Wh: {shown or 'none yet'}")
    return failures


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _accounts(api: Api) -> None:
    """The registry's accounts: the rooftops' cooperative, a green supplier, the residents."""
    for account_id, name, kind in (
        ("sun-coop", "Rooftop cooperative", "producer"),
        ("green-supplier", "Green supplier", "supplier"),
        ("residents", "Residents of the street", "consumer"),
    ):
        api.post("/v1/accounts", {"account_id": account_id, "name": name, "kind": kind}, again=True)
    for device_id, account_id in (*((p, "sun-coop") for p in PRODUCERS), ("home-1", "residents"),
                                  ("home-2", "residents")):  # fmt: skip
        api.post(f"/v1/accounts/{account_id}/devices", {"device_id": device_id}, again=True)
    _say("registry", "accounts sun-coop (owns the rooftops), green-supplier, residents (owns the homes)")


def _trade_and_match(api: Api) -> list[str]:
    """The cooperative sells its certificates to the supplier (half of the first bundle: a
    split); the supplier claims, hour by hour, as much as home-1 used, for the residents; the
    residents' hourly match, beside the annual-volume one."""
    failures = []
    coop = Api(api.url, api.key("sun-coop registry key", "account", account="sun-coop"))
    supplier = Api(api.url, api.key("green-supplier registry key", "account", account="green-supplier"))
    held = coop.get("/v1/certificates?account_id=sun-coop&status=Active&from=0&limit=1000")["bundles"]
    if not held:
        _say("registry", "no complete, measured hour yet: no certificates to trade (run more --hours)")
        return []
    first = held[0]
    half = first["bundle_id_range_start"] + first["bundle_quantity"] // 2 - 1
    ranges = [[first["bundle_id_range_start"], half]] if first["bundle_quantity"] > 1 else []
    ranges += [[b["bundle_id_range_start"], b["bundle_id_range_end"]] for b in held[1:]]
    moved = coop.post("/v1/certificates/transfer", {"ranges": ranges, "to_account": "green-supplier"})
    split = f"bundle {first['issuance_id']} split at certificate {half}"
    _say("registry", f"sun-coop transferred {moved['quantity_wh']} Wh in {len(ranges)} ranges to green-supplier"
                     f" ({split}), ledger {moved['ledger_index']}")  # fmt: skip
    stock = supplier.get("/v1/certificates?account_id=green-supplier&status=Active&from=0&limit=1000")["bundles"]
    hours = sorted({b["production_starting_interval"] for b in stock})
    load = {h["start"]: h["import_wh"] or 0 for h in api.energy("home-1", hours[0], hours[-1] + 3600)}
    claim: list[list[int]] = []
    for hour in hours:
        need = load.get(hour, 0)
        for b in (b for b in stock if b["production_starting_interval"] == hour):
            take = min(need, b["bundle_quantity"])
            if take:
                claim.append([b["bundle_id_range_start"], b["bundle_id_range_start"] + take - 1])
                need -= take
    if not claim:
        _say("registry", "home-1 used nothing in the hours with certificates: nothing to claim")
        return []
    statement = supplier.post("/v1/certificates/claim", {
        "ranges": claim, "beneficiary": "residents", "consumer_device": "home-1",
        "period_start": hours[0], "period_end": hours[-1] + 3600,
    })  # fmt: skip
    sources = statement["by_energy_source_wh"]
    _say("registry", f"green-supplier claimed {statement['quantity_wh']} Wh for residents / home-1"
                     f" ({sources}), cancellation statement {statement['claim_id']}")  # fmt: skip
    # The window the matching page opens on (whole UTC days: the last week of data), so that the
    # figure printed here is the one the page shows.
    first, last = api.span() or (hours[0], hours[-1])
    end = last - last % 86400 + 86400
    start = max(end - 7 * 86400, first - first % 86400)
    match = api.get(f"/v1/matching?device_id=home-1&from={start}&to={end}")["summary"]
    if match["hourly_match"] is None or match["matched_wh"] > match["load_wh"]:
        failures.append(f"home-1 matching is inconsistent: {match}")
    else:
        _say("matching", f"home-1, {_iso(start)[:10]} to {_iso(end - 1)[:10]} (the matching page's"
                         f" window): load {match['load_wh']} Wh, claimed {match['claimed_wh']} Wh, hourly match"
                         f" {match['hourly_match']:.1%} (annual-volume match {match['volume_match']:.1%}),"
                         f" {len(match['hours_not_covered'])} of {match['hours']} hours not fully covered")  # fmt: skip
    again = json.dumps({"ranges": claim[:1], "beneficiary": "residents", "period_start": hours[0],
                        "period_end": hours[-1] + 3600}).encode()  # fmt: skip
    status, answer = supplier.client.request("POST", "/v1/certificates/claim", again)
    if status < 300:
        failures.append("the same certificates were claimed twice")
    else:
        _say("registry", f"claiming them again: HTTP {status} {answer['type']}")
    return failures


def _community(api: Api) -> list[str]:
    """The five boards as one community (the default D315-6 key, 15-minute steps, shared at
    0.15 EUR/kWh): every step's allocation checked, the month's settlement statement."""
    failures = []
    span = api.span()
    assert span is not None, "the boards sent nothing"
    first, last = span
    start = int(first) - int(first) % 900
    street = {"community_id": "street", "name": "Our street", "grid_area": "demo-grid", "currency": "EUR",
              "from": start, "price_per_kwh": "0.15"}  # fmt: skip
    api.post("/v1/communities", street, again=True)
    for device_id, _ in BOARDS:
        api.post("/v1/communities/street/members", {"device_id": device_id, "from": start}, again=True)
    steps = api.get(f"/v1/communities/street/allocation?from={start}&to={int(last) + 1}")["steps"]
    for s in steps:
        allocated = sum(c["allocated_wh"] for c in s["consumers"].values())
        if (
            allocated > min(s["production_wh"], s["consumption_wh"])
            or any(c["allocated_wh"] > c["consumption_wh"] for c in s["consumers"].values())
            or s["surplus_wh"] != s["production_wh"] - allocated
        ):
            failures.append(f"community step {s['start_time']}: allocation breaks the invariants")
    local = sum(s["allocated_wh"] for s in steps)
    made, used = sum(s["production_wh"] for s in steps), sum(s["consumption_wh"] for s in steps)
    _say("community", f"street: {len(steps)} steps of 15 minutes, production {made} Wh, consumption {used} Wh,"
                      f" shared locally {local} Wh")  # fmt: skip
    months = sorted({_iso(s["start"])[:7] for s in steps})
    for month in months:
        statement = api.get(f"/v1/communities/street/settlement?month={month}")
        for d, m in sorted(statement["consumers"].items()):
            _say("community", f"{month} {d}: used {m['consumption_wh']} Wh, local {m['allocated_wh']} Wh,"
                              f" grid {m['grid_wh']} Wh: owes {m['owes']} EUR")  # fmt: skip
        for d, m in sorted(statement["producers"].items()):
            _say("community", f"{month} {d}: made {m['production_wh']} Wh, supplied {m['supplied_wh']} Wh,"
                              f" surplus {m['surplus_wh']} Wh: receives {m['receives']} EUR")  # fmt: skip
        if sum(f["energy_wh"] for f in statement["flows"]) != statement["allocated_wh"]:
            failures.append(f"{month}: the settlement's flows do not add up to the local energy")
    return failures


def _stop(site: sim.Site) -> None:
    board = site.board
    (board.sim / "stop").write_text("now")  # the loop stops between two steps, as on Ctrl-C
    _wait(lambda: not (board.sim / "stop").exists(), 10)


def _drain(site: sim.Site) -> bool:
    """Stops the gateway, then restarts it to pack and deliver everything pending at once."""
    board = site.board
    assert site.console is not None
    board.power_off()
    cfg = json.loads((board.flash / files.CONFIG).read_text())
    cfg["packet_seconds"] = 0
    (board.flash / files.CONFIG).write_text(json.dumps(cfg))
    board.power_on(site.console)
    flash = board.flash

    def delivered() -> bool:  # booted, nothing left to pack, nothing left to send
        log = flash / files.JOURNAL_LOG
        return (
            (flash / files.RUNNING).exists()
            and (not log.exists() or log.stat().st_size == 0)
            and not list((flash / files.JOURNAL_OUT).glob("*" + files.PACKET_SUFFIX))
        )

    done = _wait(delivered, 30)
    if not done:  # in a retry backoff (the verifier busy, a full heap): a restart tries at once
        board.power_off()
        board.power_on(site.console)
        done = _wait(delivered, 90)
    board.power_off()
    return done


def _tamper_checks(api: Api) -> list[str]:
    failures = []
    original = bytes.fromhex(api.get("/v1/packets/solar-roof-1/1")["packet"])  # as the board sent it
    status, body = _post(api.url, original)
    _say("demo", f"replayed packet 1 of solar-roof-1: HTTP {status} {body.get('status')} (a packet sent twice"
         " is acknowledged once more and counted once)")  # fmt: skip
    if status != 200 or body.get("status") != "duplicate":
        failures.append(f"replay answered {status} {body}")
    packet = decode_packet(original)
    meter = next(i for i, r in enumerate(packet.readings) if r.kind == 1)
    forged = strict_cbor.loads(packet.readings[meter].raw)
    forged[11] += 1000  # one more kWh exported
    raws = [r.raw for r in packet.readings]
    raws[meter] = strict_cbor.dumps(forged)
    status, body = _post(api.url, b"\x82" + packet.cose_sign1 + strict_cbor.dumps(raws))
    _say("demo", f"sent a copy with 1 kWh more export: HTTP {status} {body.get('type')} (on purpose: a changed"
         " reading no longer hashes to the root the board signed: refused, nothing stored)")  # fmt: skip
    if status != 400 or not str(body.get("type", "")).endswith("/merkle-root-mismatch"):
        failures.append(f"forged packet answered {status} {body}")
    return failures


def _get(url: str, path: str) -> bytes:
    """A text answer (the log's key, a checkpoint) as bytes."""
    status, body = VerifierClient(url, timeout=10).request("GET", path)
    if status != 200 or not isinstance(body, bytes):
        raise DemoFailure(f"{path}: HTTP {status}")
    return body


def _ledger_checks(api: Api, first: bytes, target: str, log_key: Path, witnesses: list[note.Verifier]) -> list[str]:
    """The ledger as an auditor sees it: signed checkpoints, a consistency proof, then
    `wattproof ledger audit` with the witnesses' keys."""
    failures = []
    key = note.Verifier.parse(_get(api.url, "/v1/ledger/key").decode().strip())
    last = _get(api.url, "/v1/ledger/checkpoint")
    try:
        old, new = (note.Checkpoint.parse(note.open_note(n, [key]).text) for n in (first, last))
        proof = api.get(f"/v1/ledger/proof/consistency?from={old.size}&to={new.size}")
        merkle.verify_consistency(old.size, new.size, old.root, new.root, [bytes.fromhex(h) for h in proof["proof"]])
        _say("ledger", f"checkpoint {new.size} signed by {key.name}; consistent with checkpoint {old.size}")
    except (note.NoteError, merkle.ProofError) as e:
        failures.append(f"ledger: {e}")
    args = [*_where(target, log_key), *(a for w in witnesses for a in ("--witness", str(w)))]
    result = subprocess.run([sys.executable, "-m", "wattproof.cli", "ledger", "audit", *args],
                            capture_output=True, text=True)  # fmt: skip
    said = (result.stdout or result.stderr).strip().splitlines() or ["no output"]
    _say("ledger", f"audit: {said[0]}: {'OK' if result.returncode == 0 else 'FAILED'}")
    if result.returncode != 0:
        failures.append(f"ledger audit: {said[-1]}")
    return failures


def _report(api: Api, work: Path) -> list[dict[str, Any]]:
    rows = []
    for device_id, _ in BOARDS:
        found = api.device(device_id)
        count = 0 if found is None else int(found["packets"])
        prev, chain = GENESIS, "unbroken"
        for seq in range(count):
            header = bytes.fromhex(api.get(f"/v1/packets/{device_id}/{seq}/header")["header"])
            if decode_header(header).prev != prev:
                chain = "BROKEN"
            prev = hashlib.sha256(header).digest()
        readings = api.readings(device_id) if count else []
        meter = [r for r in readings if r["kind"] == "meter"]
        charging = [] if not any(r["kind"] == "session" for r in readings) else (
            api.get(f"/v1/devices/{device_id}/sessions?from=0")["sessions"])  # fmt: skip
        done = [s for s in charging if s["stop"] is not None]
        generation, hours_off = _generation(api, device_id, found or {}, meter)
        still_open = [s for s in charging if s["stop"] is None]
        unverified = [s["session_id"] for s in done if not s["ocmf_verified"]]
        if unverified:
            hours_off = f"the OCMF record of session {unverified[0]} does not verify"
        if done:
            _write_ocmf(api, work, done[0])
        rows.append(
            {
                "device": device_id,
                "packets": count,
                "readings": len(readings),
                "import": (meter[-1]["import_wh"] - meter[0]["import_wh"]) / 1000 if meter else 0.0,
                "export": (meter[-1]["export_wh"] - meter[0]["export_wh"]) / 1000 if meter else 0.0,
                "generation": generation,
                "hours_off": hours_off,
                "chain": chain,
                "sessions": (
                    f", {len(done)} sessions: "
                    + ", ".join(f"{(s['energy_wh'] or 0) / 1000:.1f} kWh" for s in done)
                    + (f", OCMF verified {sum(1 for s in done if s['ocmf_verified'])} of {len(done)}" if done else "")
                    + (f"; {len(still_open)} still open when the demo stopped" if still_open else "")
                )
                if charging
                else "",
            }
        )
    return rows


def _write_ocmf(api: Api, work: Path, session: dict[str, Any]) -> None:
    """A session's OCMF record as a driver gets it: the two-line text (record, public key as hex
    DER SPKI) and the S.A.F.E. transparency software's XML container, in the work folder."""
    device_id, session_id = session["device_id"], session["session_id"]
    path = f"/v1/devices/{device_id}/sessions/{session_id}/ocmf"
    stem = work / f"{device_id}-session-{session_id[:8]}"
    stem.with_suffix(".ocmf.txt").write_bytes(api.file(path))
    stem.with_suffix(".ocmf.xml").write_bytes(api.file(path + "?format=xml"))
    _say("demo", f"{device_id}: OCMF of session {session_id[:8]} written to {stem.name}.ocmf.txt/.xml")


def _generation(
    api: Api, device_id: str, device: dict[str, Any], meter: list[dict[str, Any]]
) -> tuple[float | None, str]:
    """A producer's generation in kWh from its hourly energy records (on the register its
    enrollment names), and what is wrong if those hours do not add up to its registers."""
    register = records.generation_register(device) if device else None
    if register is None or not meter:
        return None, ""
    hours = api.energy(device_id, meter[0]["ts"], meter[-1]["ts"] + 1)
    total = sum(h["generation_wh"] for h in hours if h["generation_wh"] is not None)
    delta = meter[-1][register] - meter[0][register]
    off = "" if total == delta else f"hourly generation {total} Wh, registers {delta} Wh"
    return total / 1000, off

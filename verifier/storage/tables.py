"""Tables both backends share from schema 0006 on: written once, the integer type a
parameter (SQLite INTEGER, PostgreSQL BIGINT), with the migrations' shared steps."""

from __future__ import annotations

import json

from verifier.storage import Connection

CERTIFICATES = """
CREATE TABLE certificates (
    issuance_id           TEXT PRIMARY KEY,          -- device_id/hour start
    device_id             TEXT NOT NULL,
    production_start      {int} NOT NULL,           -- the hour, Unix seconds
    bundle_id_range_start {int} NOT NULL UNIQUE,    -- certificate ids (1 Wh each), inclusive
    bundle_id_range_end   {int} NOT NULL,
    bundle_quantity       {int} NOT NULL,           -- Wh
    status                TEXT NOT NULL,
    issued_at             {int} NOT NULL,
    expires_at            {int} NOT NULL,
    ledger_idx            {int} NOT NULL,           -- the issuance entry
    fields                TEXT NOT NULL,             -- the entry's fields, JSON
    UNIQUE (device_id, production_start)
);
CREATE INDEX certificates_hour ON certificates (production_start);
CREATE TABLE certificate_progress (
    device_id       TEXT PRIMARY KEY,
    decided_through {int} NOT NULL                  -- every hour before this is decided
)"""

METERS = """
CREATE TABLE meters (
    meter_model  TEXT NOT NULL,
    meter_serial TEXT NOT NULL,
    device_id    TEXT NOT NULL,           -- the active device that measures with it
    PRIMARY KEY (meter_model, meter_serial)
)"""


def run_script(db: Connection, script: str) -> None:
    """Runs ;-separated DDL statements one by one."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def certificates(db: Connection, integer: str) -> None:
    run_script(db, CERTIFICATES.format(int=integer))


def meters_of_active_devices(db: Connection) -> None:
    # Earlier releases let two devices share a meter: the first enrolled keeps it here.
    from verifier.storage.frozen import UNKNOWN_SERIAL

    db.execute(METERS)
    for device_id, raw in db.execute(
        "SELECT device_id, attributes FROM devices WHERE status = 'active' ORDER BY enrolled_idx"
    ).fetchall():
        attributes = json.loads(raw)
        if attributes.get("meter_serial", UNKNOWN_SERIAL) != UNKNOWN_SERIAL:
            db.execute(
                "INSERT INTO meters (meter_model, meter_serial, device_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (attributes["meter_model"], attributes["meter_serial"], device_id),
            )


REGISTRY = """
CREATE TABLE accounts (
    account_id  TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,               -- producer, consumer, community, supplier
    created_at  {int} NOT NULL,
    created_idx {int} NOT NULL               -- the account entry
);
CREATE TABLE device_accounts (
    device_id  TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,                -- the account that owns the device now
    ledger_idx {int} NOT NULL                -- the account-device entry
);
CREATE TABLE bundles (
    bundle_id_range_start {int} PRIMARY KEY, -- certificate ids (1 Wh each), inclusive
    bundle_id_range_end   {int} NOT NULL,
    issuance_id           TEXT NOT NULL,     -- certificates.issuance_id
    device_id             TEXT NOT NULL,
    production_start      {int} NOT NULL,
    account_id            TEXT,              -- the holder (NULL: the issuing body)
    status                TEXT NOT NULL,     -- Active, Claimed, Withdrawn (Expired: derived)
    expires_at            {int} NOT NULL,
    claim_id              {int},             -- the claim entry that cancelled it
    ledger_idx            {int} NOT NULL     -- the entry that last changed this range
);
CREATE INDEX bundles_holder ON bundles (account_id, status, production_start);
CREATE INDEX bundles_hour ON bundles (production_start);
CREATE INDEX bundles_device ON bundles (device_id, production_start);
CREATE INDEX bundles_claim ON bundles (claim_id, production_start, bundle_id_range_end);  -- covers matching
CREATE TABLE claims (
    claim_id        {int} PRIMARY KEY,       -- the claim entry's ledger index
    holder          TEXT,
    beneficiary     TEXT NOT NULL,
    consumer_device TEXT,
    period_start    {int} NOT NULL,
    period_end      {int} NOT NULL,
    quantity        {int} NOT NULL,
    claimed_at      {int} NOT NULL
);
CREATE INDEX claims_beneficiary ON claims (beneficiary, claim_id);
CREATE INDEX claims_consumer ON claims (consumer_device, claim_id)"""


def registry(db: Connection, integer: str) -> None:
    """Accounts, their devices, bundles as they move, claims; API keys that act for an
    account. Every bundle issued so far becomes one Active bundle of the issuing body."""
    run_script(db, REGISTRY.format(int=integer))
    db.execute("ALTER TABLE api_keys ADD COLUMN account_id TEXT")
    db.execute(
        "INSERT INTO bundles (bundle_id_range_start, bundle_id_range_end, issuance_id, device_id, production_start,"
        " account_id, status, expires_at, claim_id, ledger_idx) SELECT bundle_id_range_start, bundle_id_range_end,"
        " issuance_id, device_id, production_start, NULL, 'Active', expires_at, NULL, ledger_idx FROM certificates"
    )


REGISTER_EDGES = """
CREATE TABLE register_edges (
    device_id TEXT NOT NULL,
    t         {int} NOT NULL,                -- a quarter hour, Unix seconds
    import_wh {int} NOT NULL,                -- the registers at t: the line between the meter
    export_wh {int} NOT NULL,                -- readings around t, rounded down
    gap       {int} NOT NULL,                -- 1: those readings are over GAP_S apart
    PRIMARY KEY (device_id, t)
){clustered};
CREATE TABLE edges_unordered (
    device_id TEXT PRIMARY KEY               -- its meter's time went back: edges looked up
)"""


def register_edges(db: Connection, integer: str) -> None:
    """The registers at every quarter hour, kept at ingest (devices/records.py), so that energy
    over a year by hour is one range query; derived here for the readings so far."""
    from verifier.storage.frozen import EDGE_COLUMNS, edge_rows
    from verifier.wire.packet import KIND_METER, decode_reading

    # SQLite keeps a device's edges in key order, in the table itself (no second lookup per row).
    run_script(db, REGISTER_EDGES.format(int=integer, clustered=" WITHOUT ROWID" if db.engine == "sqlite" else ""))
    for (device_id,) in db.execute("SELECT DISTINCT device_id FROM chain_heads").fetchall():
        previous, after = None, -1
        while True:
            batch = [
                decode_reading(bytes(raw))
                for (raw,) in db.execute(
                    "SELECT raw FROM readings WHERE device_id = ? AND kind = ? AND number > ?"
                    " ORDER BY number LIMIT 5000",
                    (device_id, KIND_METER, after),
                ).fetchall()
            ]
            if not batch:
                break
            rows, unordered, replaced = edge_rows(device_id, previous, batch)
            if unordered:
                db.execute("DELETE FROM register_edges WHERE device_id = ?", (device_id,))
                db.execute("INSERT INTO edges_unordered (device_id) VALUES (?)", (device_id,))
                break
            if replaced is not None:
                db.execute("DELETE FROM register_edges WHERE device_id = ? AND t = ?", (device_id, replaced))
            db.insert_rows("register_edges", EDGE_COLUMNS, rows)
            previous, after = batch[-1], batch[-1].number


COMMUNITIES = """
CREATE TABLE communities (
    community_id TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    grid_area    TEXT NOT NULL,
    currency     TEXT NOT NULL,
    created_at   {int} NOT NULL,
    created_idx  {int} NOT NULL
);
CREATE TABLE community_settings (
    community_id   TEXT NOT NULL,
    valid_from     {int} NOT NULL,           -- in force from this step on
    step_s         {int} NOT NULL,           -- 900 or 1800
    allocation_key TEXT NOT NULL,            -- dynamic, static, per-step
    coefficients   TEXT NOT NULL,            -- static key: JSON device -> decimal
    price_per_kwh  TEXT NOT NULL,            -- decimal, the community's currency
    ledger_idx     {int} NOT NULL,
    PRIMARY KEY (community_id, valid_from)
);
CREATE TABLE community_members (
    community_id TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    valid_from   {int} NOT NULL,
    role         TEXT NOT NULL,              -- producer or consumer
    valid_until  {int},                      -- NULL: still a member
    ledger_idx   {int} NOT NULL,
    PRIMARY KEY (community_id, device_id, valid_from)
);
CREATE TABLE community_coefficients (
    community_id TEXT NOT NULL,
    step_start   {int} NOT NULL,
    device_id    TEXT NOT NULL,
    coefficient  {int} NOT NULL,             -- millionths
    ledger_idx   {int} NOT NULL,
    PRIMARY KEY (community_id, step_start, device_id)
)"""


def communities(db: Connection, integer: str) -> None:
    run_script(db, COMMUNITIES.format(int=integer))


OCMF_RECORDS = """
CREATE TABLE ocmf_records (
    device_id  TEXT NOT NULL,                -- a third-party charger (role ocmf-charger)
    digest     {blob} NOT NULL,              -- SHA-256 of the payload as signed
    ledger_idx {int} NOT NULL,               -- the ocmf entry that holds the record
    begin_ts   {int} NOT NULL,
    end_ts     {int} NOT NULL,
    begin_mwh  {int} NOT NULL,               -- the register at the begin and the end, mWh
    end_mwh    {int} NOT NULL,
    PRIMARY KEY (device_id, digest)
);
CREATE INDEX ocmf_records_register ON ocmf_records (device_id, begin_mwh)"""


def ocmf_records(db: Connection, integer: str, blob: str) -> None:
    run_script(db, OCMF_RECORDS.format(int=integer, blob=blob))


WITNESSES = """
CREATE TABLE cosignatures (
    size        {int} NOT NULL,              -- the checkpoint's tree size
    witness     TEXT NOT NULL,               -- the witness's key name
    line        TEXT NOT NULL,               -- its cosignature line, as it answered
    cosigned_at {int} NOT NULL,              -- the cosignature's own timestamp
    PRIMARY KEY (size, witness)
);
CREATE TABLE witness_sizes (
    witness    TEXT PRIMARY KEY,             -- the witness's key name
    size       {int} NOT NULL,               -- the size it last cosigned, as it said
    updated_at {int} NOT NULL
)"""


def witnesses(db: Connection, integer: str) -> None:
    run_script(db, WITNESSES.format(int=integer))


def ledger_leaf_index(db: Connection) -> None:
    """Entries found by their leaf hash (the ledger page's search, a receipt's leaf)."""
    db.execute("CREATE INDEX IF NOT EXISTS ledger_leaf ON ledger (leaf)")


OCMF_VERDICTS = """
CREATE TABLE ocmf_verdicts (
    device_id   TEXT NOT NULL,               -- a charger of ours
    stop_number {int} NOT NULL,              -- the reading that stopped the session and carries its signature
    key_id      {blob} NOT NULL,             -- the charger's key it was checked with (cose.key_id)
    verified    {int} NOT NULL,              -- 1: the OCMF record verifies, 0: it does not
    PRIMARY KEY (device_id, stop_number)
)"""


def ocmf_verdicts(db: Connection, integer: str, blob: str) -> None:
    """Each charger stop's OCMF check, kept once made: it depends only on stored readings and
    a key, which never change, so no worker checks a signature twice (the audit checks them)."""
    run_script(db, OCMF_VERDICTS.format(int=integer, blob=blob))


# The end of 9999 (verifier.wire.times.MAX_TIME): a time beyond it cannot be shown, and such a
# row, stored before times were bounded, made every answer naming it fail.
_LAST_SECOND = 253_402_300_799
_BOUNDED_TIMES = {
    "communities": ("created_at",),
    "community_settings": ("valid_from",),
    "community_members": ("valid_from", "valid_until"),
}


def times_in_range(db: Connection) -> None:
    """Times past the end of 9999 in the communities' tables become that last second, as
    communities.entry_rows now writes them from the same entries ("never", all the same)."""
    for table, columns in _BOUNDED_TIMES.items():
        for column in columns:
            db.execute(f"UPDATE {table} SET {column} = ? WHERE {column} > ?", (_LAST_SECOND, _LAST_SECOND))


def ocmf_parts(db: Connection, integer: str) -> None:
    """What each OCMF record holds of its session (ocmf.part): the whole session, only its
    begin, or only its end; an end names its begin's entry, and a begin has one end at most."""
    db.execute("ALTER TABLE ocmf_records ADD COLUMN part TEXT NOT NULL DEFAULT 'session'")
    db.execute(f"ALTER TABLE ocmf_records ADD COLUMN begin_idx {integer}")
    db.execute(
        "CREATE UNIQUE INDEX ocmf_records_pair ON ocmf_records (device_id, begin_idx) WHERE begin_idx IS NOT NULL"
    )


def registry_state_index(db: Connection) -> None:
    """The registry-state entries (verifier/certificates/registry_map.py) found without a scan of the ledger."""
    db.execute("CREATE INDEX IF NOT EXISTS ledger_registry_state ON ledger (idx) WHERE kind = 'registry-state'")


WEB_SESSIONS = """
CREATE TABLE web_sessions (
    sid         TEXT PRIMARY KEY,            -- the random id the session cookie carries
    key_id      TEXT NOT NULL,               -- the API key signed in with
    created_at  {int} NOT NULL,
    expires_at  {int} NOT NULL,              -- Unix seconds: signed out then at the latest
    ended_at    {int}                        -- set by sign-out: the cookie no longer signs anyone in
)"""


def web_sessions(db: Connection, integer: str) -> None:
    """The web pages' sign-ins, so that signing out ends a session on the server: a copied
    cookie is worth nothing after it (verifier/web/__init__.py)."""
    db.execute(WEB_SESSIONS.format(int=integer))


IDEMPOTENCY = """
CREATE TABLE idempotency (
    key_id      TEXT NOT NULL,               -- the API key that sent the request
    idem_key    TEXT NOT NULL,               -- its Idempotency-Key header
    request     {blob} NOT NULL,             -- SHA-256 of method, path and body: the same request
    status      {int} NOT NULL,              -- the answer given
    answer      TEXT NOT NULL,               -- its JSON body
    created_at  {int} NOT NULL,              -- kept 24 hours
    PRIMARY KEY (key_id, idem_key)
)"""


def idempotency(db: Connection, integer: str, blob: str) -> None:
    """A registry action's answer by its Idempotency-Key, stored in the action's own commit:
    a retry gets the same answer ("already done"), never a second action or a refusal."""
    db.execute(IDEMPOTENCY.format(int=integer, blob=blob))


PACKETS_WITH_READINGS = """
CREATE TABLE packets_new (
    device_id     TEXT NOT NULL REFERENCES devices(device_id),
    seq           {int} NOT NULL,
    header_hash   {blob} NOT NULL,       -- chain link: SHA-256 of the COSE_Sign1 bytes
    ledger_idx    {int} NOT NULL,        -- the ledger entry holding the header
    reading_count {int} NOT NULL,
    first_number  {int} NOT NULL,
    first_ts      {int} NOT NULL,
    last_ts       {int} NOT NULL,
    received_at   {int} NOT NULL,
    readings      {blob} NOT NULL,       -- the packet's readings array as sent, zlib-compressed
    PRIMARY KEY {key}
){clustered}"""
PACKET_COLUMNS = ("device_id", "seq", "header_hash", "ledger_idx", "reading_count", "first_number", "first_ts",
                  "last_ts", "received_at")  # fmt: skip
MONTHS_AHEAD = 3  # PostgreSQL: the packets' monthly partitions made ahead of the clock


def readings_in_packets(db: Connection, integer: str, blob: str) -> None:
    """Each packet's readings move into its row, as the one array the board signed them in
    (a row per reading cost more than the reading). On PostgreSQL the packets are partitioned
    by month of their first reading's time. Each chain head keeps its device's longest packet
    (last_ts - first_ts): what a search by time needs to find a packet that reaches back."""
    import zlib

    from verifier.wire import strict_cbor

    postgres = db.engine != "sqlite"
    key = "(device_id, seq, first_ts)" if postgres else "(device_id, seq)"
    ddl = PACKETS_WITH_READINGS.format(int=integer, blob=blob, key=key, clustered="" if postgres else " WITHOUT ROWID")
    db.execute(ddl + (" PARTITION BY RANGE (first_ts)" if postgres else ""))
    if postgres:
        db.execute("CREATE TABLE packets_default PARTITION OF packets_new DEFAULT")
        row = db.execute("SELECT MIN(first_ts) FROM packets").fetchone()
        ensure_months(db, "packets_new", None if row[0] is None else int(row[0]))
    columns = ", ".join(PACKET_COLUMNS)
    devices = [str(d) for (d,) in db.execute("SELECT DISTINCT device_id FROM packets ORDER BY device_id").fetchall()]
    for device_id in devices:
        after = -1
        while True:
            packets = db.execute(
                f"SELECT {columns} FROM packets WHERE device_id = ? AND seq > ? ORDER BY seq LIMIT 500",
                (device_id, after),
            ).fetchall()
            if not packets:
                break
            lo, hi = int(packets[0][5]), int(packets[-1][5]) + int(packets[-1][4])
            raws: dict[int, bytes] = {
                int(n): bytes(raw)
                for n, raw in db.execute(
                    "SELECT number, raw FROM readings WHERE device_id = ? AND number >= ? AND number < ?",
                    (device_id, lo, hi),
                )
            }
            rows = [
                (*p, zlib.compress(strict_cbor.dumps([raws[n] for n in range(int(p[5]), int(p[5]) + int(p[4]))])))
                for p in packets
            ]
            db.insert_rows("packets_new", (*PACKET_COLUMNS, "readings"), rows)
            after = int(packets[-1][1])
    db.execute("DROP TABLE packets")
    db.execute("DROP TABLE readings")
    db.execute("ALTER TABLE packets_new RENAME TO packets")
    db.execute("CREATE INDEX packets_number ON packets (device_id, first_number)")
    db.execute("CREATE INDEX packets_time ON packets (device_id, first_ts)")
    db.execute(f"ALTER TABLE chain_heads ADD COLUMN span {integer} NOT NULL DEFAULT 0")
    db.execute(
        "UPDATE chain_heads SET span = COALESCE((SELECT MAX(p.last_ts - p.first_ts) FROM packets p"
        " WHERE p.device_id = chain_heads.device_id), 0)"
    )


def month_start(ts: int) -> tuple[int, int]:
    """(year, month) of a Unix time, UTC."""
    import time

    t = time.gmtime(ts)
    return t.tm_year, t.tm_mon


def _month_bounds(year: int, month: int) -> tuple[int, int]:
    import calendar

    start = calendar.timegm((year, month, 1, 0, 0, 0))
    end = calendar.timegm((year + month // 12, month % 12 + 1, 1, 0, 0, 0))
    return start, end


def partition_name(year: int, month: int) -> str:
    return f"packets_{year:04d}_{month:02d}"


def _months(since: int | None, now: int) -> list[tuple[str, int, int]]:
    """(partition name, start, end) of every month from since's (else now's) to MONTHS_AHEAD past now's."""
    year, month = month_start(min(now, since) if since is not None else now)
    last = month_start(now)
    out = []
    for index in range(year * 12 + month - 1, last[0] * 12 + last[1] + MONTHS_AHEAD):
        y, m = divmod(index, 12)
        out.append((partition_name(y, m + 1), *_month_bounds(y, m + 1)))
    return out


def _partitions(db: Connection, table: str) -> set[str]:
    return {
        str(r[0])
        for r in db.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = ?",
            (table,),
        )
    }


def missing_months(db: Connection, now: int | None = None) -> bool:
    """PostgreSQL: whether a month from now's to MONTHS_AHEAD ahead has no partition yet."""
    import time

    existing = _partitions(db, "packets")
    return bool(existing) and any(name not in existing for name, *_ in _months(None, now or int(time.time())))


def ensure_months(
    db: Connection, table: str = "packets", since: int | None = None, now: int | None = None
) -> list[str]:
    """PostgreSQL: the packets' monthly partitions from the month of since (else this one) to
    MONTHS_AHEAD months past now, each made where missing; rows the default partition holds for
    a new month move into it. Returns the partitions made."""
    import time

    existing = _partitions(db, table)
    made = []
    for name, start, end in _months(since, int(time.time()) if now is None else now):
        if name in existing:
            continue
        db.execute(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS)")
        db.execute(
            f"WITH moved AS (DELETE FROM packets_default WHERE first_ts >= ? AND first_ts < ? RETURNING *)"
            f" INSERT INTO {name} SELECT * FROM moved",
            (start, end),
        )
        db.execute(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({start}) TO ({end})")
        made.append(name)
    return made


def partition_sizes(db: Connection) -> list[tuple[str, int, int]]:
    """PostgreSQL: (partition, rows, bytes with its indexes) of the packets' partitions, by name."""
    out = []
    for name in sorted(_partitions(db, "packets")):
        rows = int(db.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0])
        size = int(db.execute("SELECT pg_total_relation_size(?::regclass)", (name,)).fetchone()[0])
        out.append((name, rows, size))
    return out

"""The database schema as numbered migrations; SQLite's ``PRAGMA user_version`` (PostgreSQL:
table ``loa_schema``) says which ran.

Rules: never edit a migration that has shipped, append a new one. Each runs in one
transaction together with its version bump (``sqlite.migrate``, ``postgres.migrate``). Times
are Unix seconds (REAL); lists and maps are JSON text; booleans are INTEGER 0/1. Log and audit
rows name zones, users and endpoints by id without foreign keys: history must outlive what it
mentions.

Write them in SQLite's dialect, within what ``postgres.translate_ddl`` turns into PostgreSQL
(types INTEGER, REAL, TEXT, BLOB; ``INTEGER PRIMARY KEY``; ``WITHOUT ROWID``; partial
indexes; ``ALTER TABLE … ADD COLUMN``): it refuses the rest by name, and the store tests run
every migration on both engines.
"""

from __future__ import annotations

# 1: configuration and accounts.
V1 = """
CREATE TABLE zones (
    id        TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    parent    TEXT REFERENCES zones(id) ON DELETE RESTRICT,
    timezone  TEXT NOT NULL DEFAULT 'Asia/Ho_Chi_Minh',
    languages TEXT NOT NULL DEFAULT '["vi"]',
    created_at REAL NOT NULL
);
CREATE INDEX zones_parent ON zones(parent);

CREATE TABLE endpoints (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    zone             TEXT NOT NULL REFERENCES zones(id) ON DELETE RESTRICT,
    kind             TEXT NOT NULL CHECK (kind IN ('managed', 'rtp')),
    address          TEXT,
    lat              REAL,
    lon              REAL,
    volume           INTEGER NOT NULL CHECK (volume BETWEEN 0 AND 100),
    emergency_volume INTEGER NOT NULL CHECK (emergency_volume BETWEEN 0 AND 100),
    token_hash       TEXT UNIQUE,
    created_at       REAL NOT NULL
);
CREATE INDEX endpoints_zone ON endpoints(zone);

CREATE TABLE users (
    username        TEXT PRIMARY KEY,
    password_hash   TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    zone            TEXT REFERENCES zones(id) ON DELETE RESTRICT,
    emergency_right INTEGER NOT NULL DEFAULT 0,
    disabled        INTEGER NOT NULL DEFAULT 0,
    created_at      REAL NOT NULL
);

CREATE TABLE api_tokens (
    id         INTEGER PRIMARY KEY,
    hash       TEXT NOT NULL UNIQUE,
    username   TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    label      TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    last_used  REAL
);
CREATE INDEX api_tokens_user ON api_tokens(username);

CREATE TABLE sessions (
    hash       TEXT PRIMARY KEY,
    username   TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    csrf       TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX sessions_user ON sessions(username);
CREATE INDEX sessions_expiry ON sessions(expires_at);
"""

# 2: the media library, the broadcast log and the audit trail.
V2 = """
CREATE TABLE media (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    file       TEXT NOT NULL,
    size       INTEGER NOT NULL,
    duration_s REAL NOT NULL,
    rms_dbfs   REAL NOT NULL,
    peak_dbfs  REAL NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL
);

CREATE TABLE broadcast_log (
    id              TEXT PRIMARY KEY,
    what            TEXT NOT NULL,
    source          TEXT NOT NULL,
    class           TEXT NOT NULL,
    origin_zone     TEXT,
    targets         TEXT NOT NULL,
    created_by      TEXT NOT NULL,
    requested_at    REAL NOT NULL,
    started_at      REAL,
    ended_at        REAL,
    state           TEXT NOT NULL,
    reason          TEXT,
    endpoints_heard INTEGER NOT NULL DEFAULT 0,
    heard_s         TEXT NOT NULL DEFAULT '{}',
    preemptions     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX broadcast_log_requested ON broadcast_log(requested_at);
CREATE INDEX broadcast_log_started ON broadcast_log(started_at);
CREATE INDEX broadcast_log_class ON broadcast_log(class, requested_at);

-- Every zone a log row concerns, so "the log of my subtree" is one indexed join.
CREATE TABLE log_zones (
    log_id TEXT NOT NULL REFERENCES broadcast_log(id) ON DELETE CASCADE,
    zone   TEXT NOT NULL,
    PRIMARY KEY (zone, log_id)
) WITHOUT ROWID;
CREATE INDEX log_zones_log ON log_zones(log_id);

CREATE TABLE audit (
    id     INTEGER PRIMARY KEY,
    ts     REAL NOT NULL,
    user   TEXT,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT NOT NULL DEFAULT '{}',
    ip     TEXT
);
CREATE INDEX audit_ts ON audit(ts);
CREATE INDEX audit_user ON audit(user, ts);
"""

# 3: schedules (the table only; the scheduler issue fills it).
V3 = """
CREATE TABLE schedules (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    zone       TEXT REFERENCES zones(id) ON DELETE RESTRICT,
    targets    TEXT NOT NULL DEFAULT '{"zones": [], "endpoints": []}',
    class      TEXT NOT NULL DEFAULT 'scheduled',
    dtstart    REAL NOT NULL,
    rrule      TEXT NOT NULL,
    items      TEXT NOT NULL DEFAULT '[]',
    enabled    INTEGER NOT NULL DEFAULT 1,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX schedules_zone ON schedules(zone);
"""

# 4: reports upward and webhooks. Presence: one row per time a speaker was connected
# (offline_at NULL while it is; seen_at is renewed every minute so that an interval left open
# by a crash is closed at the last moment the node was known alive). Webhooks: subscriptions,
# and the outbox every event goes through before delivery, so nothing is lost on restart.
V4 = """
CREATE TABLE presence (
    id         INTEGER PRIMARY KEY,
    endpoint   TEXT NOT NULL,
    online_at  REAL NOT NULL,
    offline_at REAL,
    seen_at    REAL NOT NULL,
    CHECK (offline_at IS NULL OR offline_at >= online_at)
);
CREATE INDEX presence_endpoint ON presence(endpoint, online_at);
CREATE INDEX presence_span ON presence(online_at, offline_at);
-- at most one open interval per endpoint
CREATE UNIQUE INDEX presence_open ON presence(endpoint) WHERE offline_at IS NULL;

CREATE TABLE webhooks (
    id         INTEGER PRIMARY KEY,
    url        TEXT NOT NULL,
    secret     TEXT NOT NULL,
    events     TEXT NOT NULL DEFAULT '[]',
    enabled    INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL
);

CREATE TABLE webhook_outbox (
    id              INTEGER PRIMARY KEY,
    hook            INTEGER NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error      TEXT,
    created_at      REAL NOT NULL,
    delivered_at    REAL,
    dead_at         REAL
);
CREATE INDEX webhook_outbox_hook ON webhook_outbox(hook, id);
CREATE INDEX webhook_outbox_due ON webhook_outbox(next_attempt_at)
    WHERE delivered_at IS NULL AND dead_at IS NULL;

-- reports select the log rows that overlap a period: those that ended after its start
CREATE INDEX broadcast_log_ended ON broadcast_log(ended_at);
"""

# 5: what the scheduler and the bulletin inbox need. Schedules get their grace window and time
# zone (NULL: the zone's, else Asia/Ho_Chi_Minh); the scheduler's last run survives restarts.
# Bulletins are what the source system sends down (API or CAP): normal ones wait in the inbox
# until an operator schedules them; priority and emergency ones become broadcasts at once.
V5 = """
ALTER TABLE schedules ADD COLUMN grace_s REAL NOT NULL DEFAULT 600;
ALTER TABLE schedules ADD COLUMN timezone TEXT;
CREATE TABLE scheduler_state (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    last_run REAL NOT NULL
);

CREATE TABLE bulletins (
    id             TEXT PRIMARY KEY,
    level          TEXT NOT NULL CHECK (level IN ('normal', 'priority', 'emergency')),
    zones          TEXT NOT NULL,
    title          TEXT NOT NULL,
    variants       TEXT NOT NULL,
    issued_at      REAL NOT NULL,
    expires_at     REAL,
    repeat_every_s REAL,
    state          TEXT NOT NULL DEFAULT 'inbox'
        CHECK (state IN ('inbox', 'scheduled', 'on_air', 'done', 'cancelled', 'expired')),
    source         TEXT NOT NULL DEFAULT 'api',
    cap_sender     TEXT,
    cap_identifier TEXT,
    broadcasts     TEXT NOT NULL DEFAULT '[]',
    created_by     TEXT NOT NULL,
    created_at     REAL NOT NULL,
    updated_at     REAL NOT NULL
);
CREATE INDEX bulletins_state ON bulletins(state, issued_at);
CREATE UNIQUE INDEX bulletins_cap ON bulletins(cap_sender, cap_identifier)
    WHERE cap_identifier IS NOT NULL;
"""

# Emergency repeats (issue 10 item 6, loa/store/repeats.py): a repeating emergency broadcast,
# what each play is (plan, JSON), how often, until when, its plays and the next play's time.
V_REPEATS = """
CREATE TABLE repeats (
    id         TEXT PRIMARY KEY,
    plan       TEXT NOT NULL,
    every_s    REAL NOT NULL CHECK (every_s > 0),
    until_at   REAL,
    state      TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'cancelled', 'done')),
    reason     TEXT,
    plays      TEXT NOT NULL DEFAULT '[]',
    next_at    REAL,
    issued_at  REAL NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX repeats_state ON repeats(state, created_at);
"""

# Prepared emergency messages (issue 14 item 1, loa/store/prepared.py): a text or a media id,
# for every zone (zone NULL) or one; five national Vietnamese texts seeded once.
PREPARED_SEEDS = (
    (
        "bao",
        "Bão",
        10,
        (
            "Thông báo khẩn cấp. Bão đang tiến sát địa phương. Bà con chằng chống nhà cửa, "
            "không ra biển, không ra đồng, neo đậu tàu thuyền an toàn và di chuyển đến nơi "
            "trú ẩn theo hướng dẫn của chính quyền."
        ),
    ),
    (
        "lu",
        "Lũ lụt",
        20,
        (
            "Thông báo khẩn cấp. Nước lũ đang lên nhanh. Bà con vùng trũng thấp, ven sông, "
            "ven suối di chuyển ngay người và tài sản lên nơi cao an toàn. Không đi qua ngầm,"
            " tràn và vùng nước chảy xiết."
        ),
    ),
    (
        "sat-lo",
        "Sạt lở đất",
        30,
        (
            "Thông báo khẩn cấp. Nguy cơ sạt lở đất rất cao. Bà con sống gần sườn đồi, taluy "
            "và ven sông suối rời khỏi nhà ngay, đến nơi an toàn theo hướng dẫn của chính "
            "quyền xã."
        ),
    ),
    (
        "chay",
        "Cháy",
        40,
        (
            "Thông báo khẩn cấp. Đang xảy ra cháy. Bà con tránh xa khu vực cháy, không tụ "
            "tập, nhường đường cho lực lượng chữa cháy. Gọi 114 khi cần hỗ trợ."
        ),
    ),
    (
        "so-tan",
        "Sơ tán",
        50,
        (
            "Lệnh sơ tán khẩn cấp. Toàn bộ bà con trong khu vực di chuyển ngay đến điểm sơ "
            "tán theo hướng dẫn của chính quyền và lực lượng chức năng. Mang theo giấy tờ, "
            "thuốc men và nước uống."
        ),
    ),
)
V_PREPARED = """
CREATE TABLE prepared_messages (
    id         TEXT PRIMARY KEY,
    title      TEXT NOT NULL,
    zone       TEXT,
    text       TEXT,
    media      TEXT,
    position   INTEGER NOT NULL DEFAULT 100,
    updated_by TEXT NOT NULL,
    updated_at REAL NOT NULL,
    CHECK ((text IS NULL) <> (media IS NULL))
);
""" + "".join(
    "INSERT INTO prepared_messages (id, title, zone, text, media, position, updated_by, "
    f"updated_at) VALUES ('{id_}', '{title}', NULL, '{text}', NULL, {pos}, 'loa', 0);\n"
    for id_, title, pos, text in PREPARED_SEEDS
)

# records: a client's idempotency key for POST /broadcasts, scoped to its account. The answer
# it got is kept, so a retry (lost response, double click) gets the same broadcast back.
V_IDEMPOTENCY = """
CREATE TABLE idempotency_keys (
    account     TEXT NOT NULL,
    idem_key    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    broadcast   TEXT NOT NULL,
    answer      TEXT NOT NULL,
    created_at  REAL NOT NULL,
    PRIMARY KEY (account, idem_key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_age ON idempotency_keys(created_at);
"""

# records: a media file belongs to a zone (its uploader's); NULL is the top level (uploads by
# an admin, and every file uploaded before owners existed): every operator may use it, only
# admins may delete it.
V_MEDIA_OWNER = """
ALTER TABLE media ADD COLUMN zone TEXT;
"""

# durable: what is on air, kept from its start to its end so a restart after a crash brings it
# back (loa.onair). ``record`` is the broadcast as started (spec, source description, who,
# when) as JSON; ``alive_at`` is the last time the server was known alive with it on air (the
# start of an interruption). The log shows an interruption: when it began and when the
# broadcast came back (NULL: it did not).
V_ONAIR = """
CREATE TABLE onair (
    id         TEXT PRIMARY KEY,
    record     TEXT NOT NULL,
    started_at REAL NOT NULL,
    alive_at   REAL NOT NULL
);
ALTER TABLE broadcast_log ADD COLUMN interrupted_at REAL;
ALTER TABLE broadcast_log ADD COLUMN resumed_at REAL;
"""

# durable: when a bulletin plays, kept across restarts: the time an operator scheduled a
# normal one for, or a CAP alert's future ``effective`` time (held until then).
V_BULLETIN_AT = """
ALTER TABLE bulletins ADD COLUMN scheduled_at REAL;
"""

# Regional voices: a zone's TTS voice (NULL: its parent's). A bulletin whose play failed on
# air ends ``failed``, never ``done``: the table is rebuilt for the wider state CHECK.
V_VOICES = """
ALTER TABLE zones ADD COLUMN voice TEXT;
CREATE TABLE bulletins_v (
    id             TEXT PRIMARY KEY,
    level          TEXT NOT NULL CHECK (level IN ('normal', 'priority', 'emergency')),
    zones          TEXT NOT NULL,
    title          TEXT NOT NULL,
    variants       TEXT NOT NULL,
    issued_at      REAL NOT NULL,
    expires_at     REAL,
    repeat_every_s REAL,
    state          TEXT NOT NULL DEFAULT 'inbox' CHECK (
        state IN ('inbox', 'scheduled', 'on_air', 'done', 'cancelled', 'expired', 'failed')
    ),
    source         TEXT NOT NULL DEFAULT 'api',
    cap_sender     TEXT,
    cap_identifier TEXT,
    broadcasts     TEXT NOT NULL DEFAULT '[]',
    created_by     TEXT NOT NULL,
    created_at     REAL NOT NULL,
    updated_at     REAL NOT NULL,
    scheduled_at   REAL
);
INSERT INTO bulletins_v (
        id, level, zones, title, variants, issued_at, expires_at, repeat_every_s, state,
        source, cap_sender, cap_identifier, broadcasts, created_by, created_at,
        updated_at, scheduled_at
    )
    SELECT id, level, zones, title, variants, issued_at, expires_at, repeat_every_s, state,
        source, cap_sender, cap_identifier, broadcasts, created_by, created_at,
        updated_at, scheduled_at FROM bulletins;
DROP TABLE bulletins;
ALTER TABLE bulletins_v RENAME TO bulletins;
CREATE INDEX bulletins_state ON bulletins(state, issued_at);
CREATE UNIQUE INDEX bulletins_cap ON bulletins(cap_sender, cap_identifier)
    WHERE cap_identifier IS NOT NULL;
"""

# Cluster: the node encoding an on-air broadcast (NULL: a single node). A node restores its
# own rows after a restart; the leader adopts the rows of nodes that are gone.
V_ONAIR_NODE = """
ALTER TABLE onair ADD COLUMN node TEXT;
"""

# Per-zone packet settings (loa.relay.core.zones.ZoneAudio), each NULL: the parent's.
# ``redundancy`` is 0/1 (SQLite has no boolean; PostgreSQL gets the same integers).
V_ZONE_AUDIO = """
ALTER TABLE zones ADD COLUMN frame_ms INTEGER CHECK (frame_ms IN (20, 40, 60));
ALTER TABLE zones ADD COLUMN redundancy INTEGER CHECK (redundancy IN (0, 1));
ALTER TABLE zones ADD COLUMN playout_delay_ms INTEGER
    CHECK (playout_delay_ms BETWEEN 40 AND 1000);
"""

# Cluster: each scheduled run is claimed once, keyed by its schedule and occurrence, with the
# claiming leader's fencing token; ``fences`` holds the highest token that wrote the
# scheduler's state, so a deposed leader's late claim or ``last_run`` is refused.
V_SCHEDULE_RUNS = """
CREATE TABLE schedule_runs (
    schedule   TEXT NOT NULL,
    at         REAL NOT NULL,
    broadcast  TEXT NOT NULL,
    token      INTEGER,
    node       TEXT,
    claimed_at REAL NOT NULL,
    PRIMARY KEY (schedule, at)
);
CREATE INDEX schedule_runs_at ON schedule_runs(at);
CREATE TABLE fences (
    name  TEXT PRIMARY KEY,
    token INTEGER NOT NULL
);
"""

# Cluster: the node serving each presence interval ('' on a single node), so a node's start,
# stop and checkpoints touch its own intervals only, and the leader closes a gone node's.
V_PRESENCE_NODE = """
ALTER TABLE presence ADD COLUMN node TEXT NOT NULL DEFAULT '';
"""

MIGRATIONS: tuple[str, ...] = (
    V1,
    V2,
    V3,
    V4,
    V5,
    V_IDEMPOTENCY,
    V_MEDIA_OWNER,
    V_ONAIR,
    V_REPEATS,
    V_PREPARED,
    V_BULLETIN_AT,
    V_VOICES,
    V_ONAIR_NODE,
    V_ZONE_AUDIO,
    V_SCHEDULE_RUNS,
    V_PRESENCE_NODE,
)

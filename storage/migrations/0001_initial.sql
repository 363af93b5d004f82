-- People appear only as keyed hashes (see storage/identity.py), never as platform ids.

CREATE TABLE prompts (
    id            INTEGER PRIMARY KEY,
    platform      TEXT    NOT NULL,
    channel       TEXT    NOT NULL,
    author        TEXT    NOT NULL,            -- person key
    conversation  TEXT,                        -- thread / reply chain, NULL for a lone prompt
    text          TEXT    NOT NULL,
    context       TEXT    NOT NULL DEFAULT '', -- the full dialogue prompt the model saw
    created_at    REAL    NOT NULL
);
CREATE INDEX prompts_author ON prompts(author);
CREATE INDEX prompts_conversation ON prompts(conversation) WHERE conversation IS NOT NULL;

CREATE TABLE responses (
    id              INTEGER PRIMARY KEY,
    prompt_id       INTEGER NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
    candidate       INTEGER NOT NULL DEFAULT 0,
    text            TEXT    NOT NULL,
    model_version   INTEGER NOT NULL,
    temperature     REAL    NOT NULL,
    top_p           REAL    NOT NULL,
    max_new_tokens  INTEGER NOT NULL,
    message_key     TEXT    UNIQUE,            -- where the platform shows it, set once posted
    flagged         INTEGER NOT NULL DEFAULT 0,
    created_at      REAL    NOT NULL,
    UNIQUE (prompt_id, candidate)
);
CREATE INDEX responses_version ON responses(model_version);

CREATE TABLE votes (
    id           INTEGER PRIMARY KEY,
    response_id  INTEGER NOT NULL REFERENCES responses(id) ON DELETE CASCADE,
    voter        TEXT    NOT NULL,             -- person key
    emoji        TEXT    NOT NULL,             -- normalised (no skin tone)
    reward       REAL    NOT NULL,
    created_at   REAL    NOT NULL,
    UNIQUE (response_id, voter, emoji)
);
CREATE INDEX votes_created ON votes(created_at);
CREATE INDEX votes_voter ON votes(voter, created_at);

CREATE TABLE corrections (
    id           INTEGER PRIMARY KEY,
    response_id  INTEGER NOT NULL REFERENCES responses(id) ON DELETE CASCADE,
    author       TEXT    NOT NULL,             -- person key
    text         TEXT    NOT NULL,
    created_at   REAL    NOT NULL
);
CREATE INDEX corrections_response ON corrections(response_id);
CREATE INDEX corrections_author ON corrections(author);

-- Platform event ids already handled, so a retried delivery is a no-op.
CREATE TABLE processed_events (
    platform      TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    processed_at  REAL NOT NULL,
    PRIMARY KEY (platform, event_id)
) WITHOUT ROWID;

-- Versions the bot has served; version 0 is the base model.
CREATE TABLE model_versions (
    version     INTEGER PRIMARY KEY,
    parent      INTEGER,
    source      TEXT NOT NULL,                 -- model name or folder
    live_at     REAL NOT NULL
);

CREATE TABLE training_runs (
    id             INTEGER PRIMARY KEY,
    started_at     REAL    NOT NULL,
    finished_at    REAL,
    status         TEXT    NOT NULL CHECK (status IN ('running', 'published', 'rejected', 'skipped', 'failed')),
    parent_version INTEGER,
    new_version    INTEGER,
    examples       INTEGER,
    reason         TEXT
);
CREATE INDEX training_runs_started ON training_runs(started_at);

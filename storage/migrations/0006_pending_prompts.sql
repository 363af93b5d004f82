-- Prompts taken but not answered yet. A prompt is stored here before the platform is told
-- "received", and the row is deleted once its answer is posted, so a prompt acknowledged
-- just before a crash or a stop is answered after the restart (bot/pending.py).
-- The platform's id of who asked is kept only while the row lives (an answer may need it:
-- admins, "<@U1> asked"); prompts and answers keep only the person key.
CREATE TABLE pending_prompts (
    id            INTEGER PRIMARY KEY,
    platform      TEXT    NOT NULL,
    channel       TEXT    NOT NULL,
    thread        TEXT,                        -- where the answer goes (adapter's own id); NULL: not placed yet
    user_id       TEXT    NOT NULL,            -- platform user id, deleted with the row
    author        TEXT    NOT NULL,            -- person key
    text          TEXT    NOT NULL,
    conversation  TEXT,
    event_id      TEXT,
    received_at   REAL    NOT NULL,
    -- the answer, once generated and stored (a restart posts it instead of generating again)
    prompt_id     INTEGER REFERENCES prompts(id) ON DELETE CASCADE
);
CREATE INDEX pending_prompts_platform ON pending_prompts(platform, received_at);
CREATE INDEX pending_prompts_author ON pending_prompts(author);

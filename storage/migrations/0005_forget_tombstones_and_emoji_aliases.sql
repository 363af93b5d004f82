-- `forget me` that sticks: a forgotten person is remembered only as their person key
-- (already a keyed hash, see storage/identity.py) and when they were forgotten. A vote by
-- them on an answer posted before that moment is never stored again (a catch-up re-read,
-- a replayed event); what they give after it is kept. A second `forget me` moves the time.
CREATE TABLE forgotten_people (
    person        TEXT PRIMARY KEY,            -- person key
    forgotten_at  REAL NOT NULL
) WITHOUT ROWID;

-- `forget me` that sticks: a forgotten person is remembered only as their person key
-- (already a keyed hash, see storage/identity.py) and when they were forgotten. A vote by
-- them on an answer posted before that moment is never stored again (a catch-up re-read,
-- a replayed event); what they give after it is kept. A second `forget me` moves the time.
CREATE TABLE forgotten_people (
    person        TEXT PRIMARY KEY,            -- person key
    forgotten_at  REAL NOT NULL
) WITHOUT ROWID;
-- One emoji, one name: `+1` / `thumbsup` / 👍 are stored as 👍 and `-1` / `thumbsdown` / 👎
-- as 👎 (bot.feedback.normalize_emoji). One person's alias duplicates on one answer were
-- two votes; the earliest is kept (its delete trigger keeps the counters exact).
DELETE FROM votes WHERE comparison = 0 AND emoji IN ('+1', 'thumbsup', '👍') AND EXISTS (
    SELECT 1 FROM votes AS earlier WHERE earlier.response_id = votes.response_id AND earlier.voter = votes.voter
        AND earlier.comparison = 0 AND earlier.emoji IN ('+1', 'thumbsup', '👍') AND earlier.id < votes.id);
DELETE FROM votes WHERE comparison = 0 AND emoji IN ('-1', 'thumbsdown', '👎') AND EXISTS (
    SELECT 1 FROM votes AS earlier WHERE earlier.response_id = votes.response_id AND earlier.voter = votes.voter
        AND earlier.comparison = 0 AND earlier.emoji IN ('-1', 'thumbsdown', '👎') AND earlier.id < votes.id);
UPDATE votes SET emoji = '👍' WHERE comparison = 0 AND emoji IN ('+1', 'thumbsup');
UPDATE votes SET emoji = '👎' WHERE comparison = 0 AND emoji IN ('-1', 'thumbsdown');

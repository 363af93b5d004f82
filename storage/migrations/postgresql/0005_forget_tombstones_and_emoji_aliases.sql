-- `forget me` that sticks (see the SQLite migration of the same number): a forgotten
-- person is remembered only as their person key and when they were forgotten.
CREATE TABLE forgotten_people (
    person        TEXT PRIMARY KEY,
    forgotten_at  DOUBLE PRECISION NOT NULL
);
-- One emoji, one name: `+1` / `thumbsup` / 👍 are stored as 👍 and `-1` / `thumbsdown` / 👎
-- as 👎; one person's alias duplicates on one answer keep the earliest.
DELETE FROM votes WHERE comparison = 0 AND emoji IN ('+1', 'thumbsup', '👍') AND EXISTS (
    SELECT 1 FROM votes AS earlier WHERE earlier.response_id = votes.response_id AND earlier.voter = votes.voter
        AND earlier.comparison = 0 AND earlier.emoji IN ('+1', 'thumbsup', '👍') AND earlier.id < votes.id);
DELETE FROM votes WHERE comparison = 0 AND emoji IN ('-1', 'thumbsdown', '👎') AND EXISTS (
    SELECT 1 FROM votes AS earlier WHERE earlier.response_id = votes.response_id AND earlier.voter = votes.voter
        AND earlier.comparison = 0 AND earlier.emoji IN ('-1', 'thumbsdown', '👎') AND earlier.id < votes.id);
UPDATE votes SET emoji = '👍' WHERE comparison = 0 AND emoji IN ('+1', 'thumbsup');
UPDATE votes SET emoji = '👎' WHERE comparison = 0 AND emoji IN ('-1', 'thumbsdown');

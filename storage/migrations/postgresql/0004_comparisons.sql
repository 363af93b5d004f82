-- Comparison mode: a prompt shown as two candidates (1️⃣ / 2️⃣) is rated with one verdict,
-- stored as one vote row per candidate (same voter and emoji). Those rows are marked, so
-- 👍/👎 approval and votes per day keep counting thumbs only (as the SQLite migration).
ALTER TABLE prompts ADD COLUMN mode TEXT NOT NULL DEFAULT 'single' CHECK (mode IN ('single', 'compare'));
ALTER TABLE votes ADD COLUMN comparison INTEGER NOT NULL DEFAULT 0;

DROP TRIGGER votes_counted ON votes;
DROP TRIGGER votes_uncounted ON votes;

CREATE OR REPLACE FUNCTION votes_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO version_counts (version, up, down)
        VALUES (NEW.model_version, (NEW.reward > 0)::int, (NEW.reward < 0)::int)
        ON CONFLICT (version) DO UPDATE SET
            up = version_counts.up + (NEW.reward > 0)::int, down = version_counts.down + (NEW.reward < 0)::int;
    INSERT INTO day_counts (day, votes, up, down)
        VALUES (thumbtune_day(NEW.created_at), 1, (NEW.reward > 0)::int, (NEW.reward < 0)::int)
        ON CONFLICT (day) DO UPDATE SET votes = day_counts.votes + 1,
            up = day_counts.up + (NEW.reward > 0)::int, down = day_counts.down + (NEW.reward < 0)::int;
    RETURN NULL;
END $$;
CREATE TRIGGER votes_counted AFTER INSERT ON votes FOR EACH ROW WHEN (NEW.comparison = 0)
    EXECUTE FUNCTION votes_counted();

-- Who rated a version counts every kind of vote.
CREATE FUNCTION votes_voter_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO version_voters (version, voter, votes) VALUES (NEW.model_version, NEW.voter, 1)
        ON CONFLICT (version, voter) DO UPDATE SET votes = version_voters.votes + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER votes_voter_counted AFTER INSERT ON votes FOR EACH ROW EXECUTE FUNCTION votes_voter_counted();

CREATE OR REPLACE FUNCTION votes_uncounted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE version_counts SET up = up - (OLD.reward > 0)::int, down = down - (OLD.reward < 0)::int
        WHERE version = OLD.model_version;
    UPDATE day_counts SET votes = votes - 1, up = up - (OLD.reward > 0)::int, down = down - (OLD.reward < 0)::int
        WHERE day = thumbtune_day(OLD.created_at);
    RETURN NULL;
END $$;
CREATE TRIGGER votes_uncounted AFTER DELETE ON votes FOR EACH ROW
    WHEN (OLD.model_version IS NOT NULL AND OLD.comparison = 0) EXECUTE FUNCTION votes_uncounted();

CREATE FUNCTION votes_voter_uncounted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE version_voters SET votes = votes - 1 WHERE version = OLD.model_version AND voter = OLD.voter;
    DELETE FROM version_voters WHERE version = OLD.model_version AND voter = OLD.voter AND votes <= 0;
    RETURN NULL;
END $$;
CREATE TRIGGER votes_voter_uncounted AFTER DELETE ON votes FOR EACH ROW WHEN (OLD.model_version IS NOT NULL)
    EXECUTE FUNCTION votes_voter_uncounted();

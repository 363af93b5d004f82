-- Comparison mode: a prompt shown as two candidates (1️⃣ / 2️⃣) is rated with one verdict,
-- stored as one vote row per candidate (same voter and emoji). Those rows are marked, so
-- 👍/👎 approval and votes per day keep counting thumbs only; comparisons have their own
-- head-to-head statistics.
ALTER TABLE prompts ADD COLUMN mode TEXT NOT NULL DEFAULT 'single' CHECK (mode IN ('single', 'compare'));
ALTER TABLE votes ADD COLUMN comparison INTEGER NOT NULL DEFAULT 0;

DROP TRIGGER votes_counted;
DROP TRIGGER votes_uncounted;

CREATE TRIGGER votes_counted AFTER INSERT ON votes WHEN NEW.comparison = 0 BEGIN
    INSERT INTO version_counts (version, up, down)
        VALUES (coalesce(NEW.model_version, (SELECT model_version FROM responses WHERE id = NEW.response_id)),
                NEW.reward > 0, NEW.reward < 0)
        ON CONFLICT (version) DO UPDATE SET up = up + (NEW.reward > 0), down = down + (NEW.reward < 0);
    INSERT INTO day_counts (day, votes, up, down)
        VALUES (date(NEW.created_at, 'unixepoch'), 1, NEW.reward > 0, NEW.reward < 0)
        ON CONFLICT (day) DO UPDATE SET
            votes = votes + 1, up = up + (NEW.reward > 0), down = down + (NEW.reward < 0);
END;

-- Who rated a version counts every kind of vote.
CREATE TRIGGER votes_voter_counted AFTER INSERT ON votes BEGIN
    INSERT INTO version_voters (version, voter, votes)
        VALUES (coalesce(NEW.model_version, (SELECT model_version FROM responses WHERE id = NEW.response_id)),
                NEW.voter, 1)
        ON CONFLICT (version, voter) DO UPDATE SET votes = votes + 1;
END;

CREATE TRIGGER votes_uncounted AFTER DELETE ON votes WHEN OLD.model_version IS NOT NULL AND OLD.comparison = 0 BEGIN
    UPDATE version_counts SET up = up - (OLD.reward > 0), down = down - (OLD.reward < 0)
        WHERE version = OLD.model_version;
    UPDATE day_counts SET
        votes = votes - 1, up = up - (OLD.reward > 0), down = down - (OLD.reward < 0)
        WHERE day = date(OLD.created_at, 'unixepoch');
END;

CREATE TRIGGER votes_voter_uncounted AFTER DELETE ON votes WHEN OLD.model_version IS NOT NULL BEGIN
    UPDATE version_voters SET votes = votes - 1 WHERE version = OLD.model_version AND voter = OLD.voter;
    DELETE FROM version_voters WHERE version = OLD.model_version AND voter = OLD.voter AND votes <= 0;
END;

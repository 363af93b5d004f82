-- Running counters for statistics, kept exact by triggers in the same transaction as
-- each write, so `thumbtune stats` reads a few rows instead of scanning every vote.

-- A vote remembers the version of the answer it rates (answers never change version).
ALTER TABLE votes ADD COLUMN model_version INTEGER;
UPDATE votes SET model_version = (SELECT model_version FROM responses WHERE responses.id = votes.response_id);

CREATE TABLE version_counts (
    version  INTEGER PRIMARY KEY,
    answers  INTEGER NOT NULL DEFAULT 0,
    up       INTEGER NOT NULL DEFAULT 0,
    down     INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE version_voters (
    version  INTEGER NOT NULL,
    voter    TEXT    NOT NULL,
    votes    INTEGER NOT NULL,
    PRIMARY KEY (version, voter)
) WITHOUT ROWID;
CREATE TABLE day_counts (
    day      TEXT PRIMARY KEY,
    votes    INTEGER NOT NULL DEFAULT 0,
    up       INTEGER NOT NULL DEFAULT 0,
    down     INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

INSERT INTO version_counts (version, answers)
    SELECT model_version, count(*) FROM responses GROUP BY model_version;
INSERT INTO version_counts (version)
    SELECT DISTINCT model_version FROM votes WHERE true ON CONFLICT (version) DO NOTHING;
UPDATE version_counts SET
    up = (SELECT count(*) FROM votes WHERE votes.model_version = version_counts.version AND reward > 0),
    down = (SELECT count(*) FROM votes WHERE votes.model_version = version_counts.version AND reward < 0);
INSERT INTO version_voters (version, voter, votes)
    SELECT model_version, voter, count(*) FROM votes GROUP BY model_version, voter;
INSERT INTO day_counts (day, votes, up, down)
    SELECT date(created_at, 'unixepoch'), count(*), sum(reward > 0), sum(reward < 0) FROM votes
    GROUP BY date(created_at, 'unixepoch');

CREATE TRIGGER responses_counted AFTER INSERT ON responses BEGIN
    INSERT INTO version_counts (version, answers) VALUES (NEW.model_version, 1)
        ON CONFLICT (version) DO UPDATE SET answers = answers + 1;
END;

CREATE TRIGGER responses_uncounted AFTER DELETE ON responses BEGIN
    UPDATE version_counts SET answers = answers - 1 WHERE version = OLD.model_version;
END;

-- A writer that leaves model_version out (an older bot, a script) still gets it filled in.
CREATE TRIGGER votes_version_filled AFTER INSERT ON votes WHEN NEW.model_version IS NULL BEGIN
    UPDATE votes SET model_version = (SELECT model_version FROM responses WHERE id = NEW.response_id)
        WHERE id = NEW.id;
END;

CREATE TRIGGER votes_counted AFTER INSERT ON votes BEGIN
    INSERT INTO version_counts (version, up, down)
        VALUES (coalesce(NEW.model_version, (SELECT model_version FROM responses WHERE id = NEW.response_id)),
                NEW.reward > 0, NEW.reward < 0)
        ON CONFLICT (version) DO UPDATE SET up = up + (NEW.reward > 0), down = down + (NEW.reward < 0);
    INSERT INTO version_voters (version, voter, votes)
        VALUES (coalesce(NEW.model_version, (SELECT model_version FROM responses WHERE id = NEW.response_id)),
                NEW.voter, 1)
        ON CONFLICT (version, voter) DO UPDATE SET votes = votes + 1;
    INSERT INTO day_counts (day, votes, up, down)
        VALUES (date(NEW.created_at, 'unixepoch'), 1, NEW.reward > 0, NEW.reward < 0)
        ON CONFLICT (day) DO UPDATE SET
            votes = votes + 1, up = up + (NEW.reward > 0), down = down + (NEW.reward < 0);
END;

CREATE TRIGGER votes_uncounted AFTER DELETE ON votes WHEN OLD.model_version IS NOT NULL BEGIN
    UPDATE version_counts SET up = up - (OLD.reward > 0), down = down - (OLD.reward < 0)
        WHERE version = OLD.model_version;
    UPDATE version_voters SET votes = votes - 1 WHERE version = OLD.model_version AND voter = OLD.voter;
    DELETE FROM version_voters WHERE version = OLD.model_version AND voter = OLD.voter AND votes <= 0;
    UPDATE day_counts SET
        votes = votes - 1, up = up - (OLD.reward > 0), down = down - (OLD.reward < 0)
        WHERE day = date(OLD.created_at, 'unixepoch');
END;

-- Running counters for statistics, kept exact by triggers in the same transaction as
-- each write (PostgreSQL's copy of the SQLite migration: PL/pgSQL trigger functions).
-- Concurrent writers in several processes meet on the counter rows' locks (ON CONFLICT
-- DO UPDATE), so the counts stay exact across processes.

ALTER TABLE votes ADD COLUMN model_version INTEGER;
UPDATE votes SET model_version = (SELECT model_version FROM responses WHERE responses.id = votes.response_id);

CREATE TABLE version_counts (
    version  INTEGER PRIMARY KEY,
    answers  BIGINT NOT NULL DEFAULT 0,
    up       BIGINT NOT NULL DEFAULT 0,
    down     BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE version_voters (
    version  INTEGER NOT NULL,
    voter    TEXT    NOT NULL,
    votes    BIGINT  NOT NULL,
    PRIMARY KEY (version, voter)
);
CREATE TABLE day_counts (
    day      TEXT PRIMARY KEY,           -- UTC day, YYYY-MM-DD as SQLite's date() writes it
    votes    BIGINT NOT NULL DEFAULT 0,
    up       BIGINT NOT NULL DEFAULT 0,
    down     BIGINT NOT NULL DEFAULT 0
);

-- The UTC day of a Unix time, as SQLite's date(t, 'unixepoch').
CREATE FUNCTION thumbtune_day(t DOUBLE PRECISION) RETURNS TEXT LANGUAGE sql IMMUTABLE AS
$$ SELECT to_char(to_timestamp(t) AT TIME ZONE 'UTC', 'YYYY-MM-DD') $$;

INSERT INTO version_counts (version, answers)
    SELECT model_version, count(*) FROM responses GROUP BY model_version;
INSERT INTO version_counts (version)
    SELECT DISTINCT model_version FROM votes ON CONFLICT (version) DO NOTHING;
UPDATE version_counts SET
    up = (SELECT count(*) FROM votes WHERE votes.model_version = version_counts.version AND reward > 0),
    down = (SELECT count(*) FROM votes WHERE votes.model_version = version_counts.version AND reward < 0);
INSERT INTO version_voters (version, voter, votes)
    SELECT model_version, voter, count(*) FROM votes GROUP BY model_version, voter;
INSERT INTO day_counts (day, votes, up, down)
    SELECT thumbtune_day(created_at), count(*), count(*) FILTER (WHERE reward > 0), count(*) FILTER (WHERE reward < 0)
    FROM votes GROUP BY thumbtune_day(created_at);

CREATE FUNCTION responses_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO version_counts (version, answers) VALUES (NEW.model_version, 1)
        ON CONFLICT (version) DO UPDATE SET answers = version_counts.answers + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER responses_counted AFTER INSERT ON responses FOR EACH ROW EXECUTE FUNCTION responses_counted();

CREATE FUNCTION responses_uncounted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE version_counts SET answers = answers - 1 WHERE version = OLD.model_version;
    RETURN NULL;
END $$;
CREATE TRIGGER responses_uncounted AFTER DELETE ON responses FOR EACH ROW EXECUTE FUNCTION responses_uncounted();

-- A writer that leaves model_version out (an older bot, a script) still gets it filled in
-- (before the insert here: PostgreSQL can change the row it is writing).
CREATE FUNCTION votes_version_filled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.model_version IS NULL THEN
        NEW.model_version := (SELECT model_version FROM responses WHERE id = NEW.response_id);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER votes_version_filled BEFORE INSERT ON votes FOR EACH ROW EXECUTE FUNCTION votes_version_filled();

CREATE FUNCTION votes_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO version_counts (version, up, down)
        VALUES (NEW.model_version, (NEW.reward > 0)::int, (NEW.reward < 0)::int)
        ON CONFLICT (version) DO UPDATE SET
            up = version_counts.up + (NEW.reward > 0)::int, down = version_counts.down + (NEW.reward < 0)::int;
    INSERT INTO version_voters (version, voter, votes) VALUES (NEW.model_version, NEW.voter, 1)
        ON CONFLICT (version, voter) DO UPDATE SET votes = version_voters.votes + 1;
    INSERT INTO day_counts (day, votes, up, down)
        VALUES (thumbtune_day(NEW.created_at), 1, (NEW.reward > 0)::int, (NEW.reward < 0)::int)
        ON CONFLICT (day) DO UPDATE SET votes = day_counts.votes + 1,
            up = day_counts.up + (NEW.reward > 0)::int, down = day_counts.down + (NEW.reward < 0)::int;
    RETURN NULL;
END $$;
CREATE TRIGGER votes_counted AFTER INSERT ON votes FOR EACH ROW EXECUTE FUNCTION votes_counted();

CREATE FUNCTION votes_uncounted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE version_counts SET up = up - (OLD.reward > 0)::int, down = down - (OLD.reward < 0)::int
        WHERE version = OLD.model_version;
    UPDATE version_voters SET votes = votes - 1 WHERE version = OLD.model_version AND voter = OLD.voter;
    DELETE FROM version_voters WHERE version = OLD.model_version AND voter = OLD.voter AND votes <= 0;
    UPDATE day_counts SET votes = votes - 1, up = up - (OLD.reward > 0)::int, down = down - (OLD.reward < 0)::int
        WHERE day = thumbtune_day(OLD.created_at);
    RETURN NULL;
END $$;
CREATE TRIGGER votes_uncounted AFTER DELETE ON votes FOR EACH ROW WHEN (OLD.model_version IS NOT NULL)
    EXECUTE FUNCTION votes_uncounted();

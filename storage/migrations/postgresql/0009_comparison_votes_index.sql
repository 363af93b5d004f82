-- Head-to-head statistics read the comparison verdicts (votes.comparison = 1): a partial
-- index finds those few rows without scanning every 👍/👎 (the dashboard's index page with
-- a million votes: bench.dashboard).
CREATE INDEX votes_comparison ON votes(id) WHERE comparison = 1;

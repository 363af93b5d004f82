-- The reward model's score of each sampled candidate (THUMBTUNE_BEST_OF): the shown answer
-- is candidate 0, the one it scored highest; NULL where no reward model ranked them.
ALTER TABLE responses ADD COLUMN score REAL;

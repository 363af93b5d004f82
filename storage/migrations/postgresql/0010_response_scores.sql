-- The reward model's score of each sampled candidate (THUMBTUNE_BEST_OF).
ALTER TABLE responses ADD COLUMN score DOUBLE PRECISION;

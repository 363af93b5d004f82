-- What a training run learned from, so `thumbtune models` and stats can show it
-- without opening the model registry.
ALTER TABLE training_runs ADD COLUMN desirable INTEGER;
ALTER TABLE training_runs ADD COLUMN undesirable INTEGER;
ALTER TABLE training_runs ADD COLUMN held_out INTEGER;

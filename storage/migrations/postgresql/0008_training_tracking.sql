-- Where a run's training curves went (THUMBTUNE_REPORT_TO): a TensorBoard folder, or the
-- tracker's link for wandb / mlflow / trackio; NULL when nothing tracked it.
ALTER TABLE training_runs ADD COLUMN tracking TEXT;

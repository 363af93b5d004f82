-- Which bot process took a pending prompt (storage.database.Database.replica). With several
-- processes on one database, one that starts answers the prompts left by itself and by
-- processes no longer running, never those another running process is answering.
ALTER TABLE pending_prompts ADD COLUMN owner TEXT;

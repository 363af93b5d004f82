-- Implicit feedback (bot.implicit): what the person who asked does anyway right after an
-- answer, its own kind of feedback beside votes and never stored as one. The person's next
-- message read as thanks or a complaint, the same question asked again (a retry: the new
-- answer is preferred) or asked again in other words (a rephrase: the answer failed).
-- One of each kind per person and answer; `forget me` deletes them, retention blanks `text`.
CREATE TABLE implicit_signals (
    id                  INTEGER PRIMARY KEY,
    response_id         INTEGER NOT NULL REFERENCES responses(id) ON DELETE CASCADE,
    person              TEXT    NOT NULL,             -- person key of who gave it
    kind                TEXT    NOT NULL CHECK (kind IN ('reply_positive', 'reply_negative', 'retry', 'rephrase')),
    value               REAL    NOT NULL,             -- > 0 speaks for the answer, < 0 against it
    text                TEXT    NOT NULL DEFAULT '',  -- the reply that gave it (replies only)
    better_response_id  INTEGER REFERENCES responses(id) ON DELETE CASCADE,  -- a retry's new answer
    model_version       INTEGER NOT NULL,             -- the answer's, as votes keep it
    created_at          REAL    NOT NULL,
    UNIQUE (response_id, person, kind)
);
CREATE INDEX implicit_signals_person ON implicit_signals(person);
CREATE INDEX implicit_signals_created ON implicit_signals(created_at);

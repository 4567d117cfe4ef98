-- The LMS outbox: what the classroom recorded, until the LMS has it.
CREATE TABLE outbox (
    -- Local sequence: the order things happened on this box, whatever its clock says.
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Stable id of the record (UUID), shown on the page.
    record_id TEXT NOT NULL UNIQUE,
    -- Fixed at enqueue; the LMS sees it (xAPI statement id, Canvas comment marker), so
    -- a retry after a crash is recognised instead of applied twice.
    idempotency_key TEXT NOT NULL UNIQUE,
    target TEXT NOT NULL CHECK (target IN ('xapi', 'canvas', 'moodle')),
    kind TEXT NOT NULL,
    -- Records of one entity (a student's attendance in a lesson, a student's work on an
    -- assignment) are delivered in seq order; different entities independently.
    entity TEXT NOT NULL,
    payload TEXT NOT NULL,
    -- Wall-clock time at enqueue, and whether that clock looked wrong.
    created_at_ms INTEGER NOT NULL,
    clock_suspect INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    delivered_at_ms INTEGER
);

CREATE INDEX outbox_pending ON outbox (state, entity, seq);
CREATE INDEX outbox_delivered ON outbox (state, delivered_at_ms);

-- Files of a record (students' work), stored beside the database.
CREATE TABLE attachment (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id TEXT NOT NULL REFERENCES outbox (record_id) ON DELETE CASCADE,
    file_name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    -- Relative to the attachments directory.
    stored_path TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);

CREATE INDEX attachment_record ON attachment (record_id);

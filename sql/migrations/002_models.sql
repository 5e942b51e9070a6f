-- Model registry mirror: one row per trained model. The champion pointer in the object store
-- (<models_prefix>champion.json) is the source of truth; this table mirrors it for queries.
-- Portable SQL: the same file runs on SQLite and PostgreSQL.

CREATE TABLE model_versions (
    version        TEXT PRIMARY KEY,          -- <UTC timestamp>-<short hash>
    created_at     TIMESTAMP NOT NULL,
    run_id         TEXT NOT NULL,
    uri            TEXT NOT NULL,             -- the version folder in the object store
    image_size     INTEGER NOT NULL,
    threshold      DOUBLE PRECISION NOT NULL, -- chosen on the validation split
    accuracy       DOUBLE PRECISION,          -- test-split metrics; FAKE is the positive class
    precision_fake DOUBLE PRECISION,
    recall_fake    DOUBLE PRECISION,
    f1_fake        DOUBLE PRECISION,
    auc            DOUBLE PRECISION,
    confusion      TEXT,                      -- JSON [[tn, fp], [fn, tp]]
    dataset_faces  INTEGER NOT NULL,          -- labelled faces used (all splits)
    data_cutoff    TIMESTAMP NOT NULL,        -- when the training shards were listed
    promoted       INTEGER NOT NULL DEFAULT 0, -- 1 once it became champion (0/1: portable boolean)
    promoted_at    TIMESTAMP,
    reason         TEXT NOT NULL              -- why it was or was not promoted
);

CREATE INDEX model_versions_promoted_idx ON model_versions (promoted, promoted_at);

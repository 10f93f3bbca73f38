-- Campaign bookkeeping (planner). One row per campaign version, upserted
-- when planning ends: planned (batches emitted), cancelled (a control
-- event stopped it; counts are what was emitted before), expired (past
-- expires-at or TTL before planning began; nothing emitted) or failed
-- (dead-lettered, e.g. unknown app; reason says why). A planned row is
-- written only once every batch it counts is committed, and the planner
-- reads it before planning a campaign record: a replay of a version that
-- has a row (or of an older version than one that has) plans nothing,
-- and a failed version is handled again. The upsert is idempotent.
-- `pushctl stats` reads planned_devices and planned_batches from here.
CREATE TABLE IF NOT EXISTS campaigns (
  id               VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  version          INT UNSIGNED NOT NULL,
  app              VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  status           ENUM('planned','cancelled','expired','failed') NOT NULL,
  reason           VARCHAR(1024) NULL,
  planned_devices  BIGINT UNSIGNED NOT NULL DEFAULT 0,
  planned_batches  BIGINT UNSIGNED NOT NULL DEFAULT 0,
  invalid_tokens   BIGINT UNSIGNED NOT NULL DEFAULT 0,
  expired_devices  BIGINT UNSIGNED NOT NULL DEFAULT 0,
  first_send_at    DATETIME(3)  NULL,
  last_send_at     DATETIME(3)  NULL,
  expires_at       DATETIME(3)  NULL,
  started_at       DATETIME(3)  NOT NULL,
  finished_at      DATETIME(3)  NOT NULL,
  PRIMARY KEY (id, version),
  KEY ix_app_finished (app, finished_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

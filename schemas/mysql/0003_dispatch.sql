-- Dispatcher progress, parking and halts (pipeline/dispatcher). Every
-- dispatcher instance shares these tables; they are what survives kill -9.
--
-- dispatch_progress: one row per batch id (retry batches have their own
-- ids, <batch id>#a<attempt>). done and retry are bitmaps of device indexes
-- (bit i of byte i/8; at most 10,000 devices, so 1,250 bytes): done = the
-- device's result for this attempt is on the results topic; retry = of
-- those, the ones waiting for the retry batch. The row is written after each
-- chunk's results are acknowledged, so a crash re-sends at most the chunk in
-- flight; finished_at is set once the retry batch (if any) is written, and a
-- later copy of the batch (a replay, a re-forward) is then skipped. Rows are
-- deleted some time after finished_at (dispatcher progress retention).
CREATE TABLE IF NOT EXISTS dispatch_progress (
  batch_id       VARCHAR(256) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  done           VARBINARY(1250) NOT NULL,
  retry          VARBINARY(1250) NOT NULL,
  retry_after_ms BIGINT UNSIGNED NOT NULL DEFAULT 0,
  finished_at    DATETIME(3) NULL,
  updated_at     DATETIME(3) NOT NULL,
  PRIMARY KEY (batch_id),
  KEY ix_finished (finished_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- dispatch_parked: batches set aside, neither sent nor dropped, because
-- their campaign is paused ('paused') or their app's credentials were
-- refused ('halted'), with the ready record they came in. A dispatcher
-- writes one back to the ready topic, then deletes the row, once its
-- reason clears (or it expires, or its campaign is cancelled: the
-- dispatcher then writes its expired/cancelled results).
CREATE TABLE IF NOT EXISTS dispatch_parked (
  batch_id    VARCHAR(256) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  app         VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  campaign_id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  reason      ENUM('paused','halted') NOT NULL,
  send_at     DATETIME(3)  NOT NULL,
  expires_at  DATETIME(3)  NULL,
  record_key  VARBINARY(1024) NOT NULL,
  headers     BLOB NOT NULL,
  value       MEDIUMBLOB NOT NULL,
  parked_at   DATETIME(3)  NOT NULL,
  PRIMARY KEY (batch_id),
  KEY ix_parked_at (parked_at),
  KEY ix_app (app, reason)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- dispatch_halts: apps whose credentials a provider refused. Every
-- dispatcher parks their batches; one at a time (probe_at) may probe with
-- one real send, and the row is deleted when a probe is not refused.
CREATE TABLE IF NOT EXISTS dispatch_halts (
  app      VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  provider VARCHAR(16)  NOT NULL,
  reason   VARCHAR(256) NOT NULL,
  since    DATETIME(3)  NOT NULL,
  probe_at DATETIME(3)  NOT NULL,
  PRIMARY KEY (app)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

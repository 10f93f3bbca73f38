-- Devices: one row per (app, token). The planner streams an app's active
-- audience in primary-key order (ix_audience); feedback deactivates dead
-- tokens by (app, token) (uq_app_token) with a conditional UPDATE guarded by
-- registered_at.
CREATE TABLE IF NOT EXISTS devices (
  id                  BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  app                 VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  user_id             VARCHAR(128) NULL,
  platform            ENUM('ios','android') NOT NULL,
  token               VARCHAR(512) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  locale              VARCHAR(35)  NULL,
  timezone            VARCHAR(64)  NULL,
  active              TINYINT(1)   NOT NULL DEFAULT 1,
  registered_at       DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  deactivated_at      DATETIME(3)  NULL,
  deactivation_reason VARCHAR(64)  NULL,
  PRIMARY KEY (id),
  UNIQUE KEY uq_app_token (app, token),
  KEY ix_audience (app, active, id),
  KEY ix_app_user (app, user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

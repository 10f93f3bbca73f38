-- Suspect-token strikes (feedback). APNs BadDeviceToken and
-- DeviceTokenNotForTopic are often a sandbox/production mix-up rather than a
-- dead token, so each such result is recorded here as a strike instead of
-- deactivating the device at once. Feedback deactivates a device (reason
-- 'suspect_strikes') when it has feedback.suspect_strikes strikes newer than
-- its registered_at; a re-registration therefore starts the count again
-- without deleting history. The key includes the result id, so a replayed
-- result is one strike, not two.
CREATE TABLE IF NOT EXISTS device_strikes (
  app       VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  token     VARCHAR(512) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  result_id VARCHAR(256) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  reason    VARCHAR(64)  NOT NULL,
  at        DATETIME(3)  NOT NULL,
  PRIMARY KEY (app, token, result_id),
  KEY ix_at (at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

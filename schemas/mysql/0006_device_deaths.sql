-- Death evidence (feedback): per device, the latest provider death
-- (token_dead: its time and reason) and the latest unregister by the app.
-- devices.deactivated_at holds only the evidence that won; an older death
-- hidden behind a later one (a strike deactivation, say) was lost, so a
-- registration arriving late could revive a device that the same events
-- in the other order left dead. Feedback now derives active,
-- deactivated_at and deactivation_reason from this table, device_strikes
-- and registered_at, which makes the state independent of arrival order.
-- Rows may name a device that devices does not hold (yet), as
-- device_strikes' rows may: a registration older than the evidence that
-- arrives later must still end dead.
-- A table, not columns on devices: MySQL 8 has no ADD COLUMN IF NOT EXISTS,
-- and every statement of a migration must be re-runnable.
CREATE TABLE IF NOT EXISTS device_deaths (
  app             VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  token           VARCHAR(512) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  died_at         DATETIME(3)  NULL,
  death_reason    VARCHAR(64)  CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  unregistered_at DATETIME(3)  NULL,
  PRIMARY KEY (app, token)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
-- The evidence of devices deactivated before this migration, which is the
-- winning evidence only (the rest was not kept). Strike deactivations need
-- none: device_strikes holds them. INSERT IGNORE keeps a re-run from
-- overwriting what feedback recorded since. Scans the devices table once.
INSERT IGNORE INTO device_deaths (app, token, died_at, death_reason, unregistered_at)
SELECT app, token,
  IF(deactivation_reason = 'unregistered_by_app', NULL, deactivated_at),
  IF(deactivation_reason = 'unregistered_by_app', NULL, COALESCE(deactivation_reason, 'token_dead')),
  IF(deactivation_reason = 'unregistered_by_app', deactivated_at, NULL)
FROM devices
WHERE active = 0 AND deactivated_at IS NOT NULL
  AND (deactivation_reason IS NULL OR deactivation_reason <> 'suspect_strikes');

/**
 * Tables of the devices feature (inventory, leases, containers). Times are integer milliseconds
 * (UTC) so overlap checks are plain comparisons. Idempotent: every devices module calls it.
 */
import type BetterSqlite3 from 'better-sqlite3';

export function migrateDevices(db: BetterSqlite3.Database): void {
  db.exec(`
    CREATE TABLE IF NOT EXISTS devices (
      id TEXT PRIMARY KEY,
      name TEXT NOT NULL UNIQUE,
      hardware_type TEXT NOT NULL,
      project_id TEXT NOT NULL,
      properties TEXT NOT NULL,            -- JSON object; machine_name and model live here (as in Doni)
      authorized_projects TEXT NOT NULL,   -- JSON array; empty = every project
      engine_endpoint TEXT NOT NULL,       -- unix:///path or tcp://127.0.0.x:port; never shown to users
      created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS device_leases (
      id TEXT PRIMARY KEY,
      name TEXT NOT NULL,
      project_id TEXT NOT NULL,
      user_id TEXT NOT NULL,
      start_at INTEGER NOT NULL,
      end_at INTEGER NOT NULL,
      before_end_at INTEGER,
      status TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS device_leases_project ON device_leases(project_id);
    CREATE TABLE IF NOT EXISTS device_reservations (
      id TEXT PRIMARY KEY,
      lease_id TEXT NOT NULL REFERENCES device_leases(id) ON DELETE CASCADE,
      resource_type TEXT NOT NULL,
      min_count INTEGER NOT NULL,
      max_count INTEGER NOT NULL,
      resource_properties TEXT NOT NULL,
      status TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS device_reservations_lease ON device_reservations(lease_id);
    -- One row per device held by a reservation; start/end copied from the lease so the
    -- "is this device free" check is one indexed range query. active=0 once the lease ended.
    CREATE TABLE IF NOT EXISTS device_allocations (
      id TEXT PRIMARY KEY,
      reservation_id TEXT NOT NULL REFERENCES device_reservations(id) ON DELETE CASCADE,
      device_id TEXT NOT NULL,
      start_at INTEGER NOT NULL,
      end_at INTEGER NOT NULL,
      active INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX IF NOT EXISTS device_allocations_device ON device_allocations(device_id, active, start_at);
    CREATE TABLE IF NOT EXISTS device_lease_events (
      id TEXT PRIMARY KEY,
      lease_id TEXT NOT NULL REFERENCES device_leases(id) ON DELETE CASCADE,
      event_type TEXT NOT NULL,            -- start_lease | before_end_lease | end_lease
      time INTEGER NOT NULL,
      status TEXT NOT NULL,                -- UNDONE | IN_PROGRESS | DONE | ERROR
      created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS device_lease_events_due ON device_lease_events(status, time);
    CREATE TABLE IF NOT EXISTS device_containers (
      id TEXT PRIMARY KEY,
      name TEXT NOT NULL,
      project_id TEXT NOT NULL,
      user_id TEXT NOT NULL,
      reservation_id TEXT NOT NULL,
      lease_id TEXT NOT NULL,
      device_id TEXT NOT NULL,
      engine_id TEXT,                       -- the Docker container id on the device's engine
      image TEXT NOT NULL,
      spec TEXT NOT NULL,                   -- JSON: command, environment, exposed_ports, workdir, labels ...
      status TEXT NOT NULL,                 -- Creating | Created | Running | Stopped | Error | Deleting
      status_reason TEXT,
      created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS device_containers_reservation ON device_containers(reservation_id);
  `);
}

/**
 * The SQLite driver for the running Node: import `Database` from here, never from better-sqlite3.
 *  - Node 22 and newer: better-sqlite3 13 (package alias `better-sqlite3-napi`), a Node-API build
 *    shipped prebuilt in the package: nothing compiles at install, one binary for every Node.
 *  - Node 20: better-sqlite3 12, compiled for the installing Node (13 needs Node 22; it crashes on 20).
 * 12 cannot serve Node 24: built against Node 24.19+ headers its Statement destructor aborts the
 * process when a GC runs outside a JavaScript context ("Assertion failed: (env) != nullptr" in
 * RemoveEnvironmentCleanupHook); the unit suite hit it under Node 24. The API is the same in both.
 */
import type BetterSqlite3 from 'better-sqlite3';

/** Which package serves a Node of this major version. */
export function sqliteDriverFor(nodeMajor: number): 'better-sqlite3' | 'better-sqlite3-napi' {
  return nodeMajor >= 22 ? 'better-sqlite3-napi' : 'better-sqlite3';
}

export const sqliteDriver = sqliteDriverFor(Number(process.versions.node.split('.')[0]));

/* eslint-disable @typescript-eslint/no-require-imports */
// Literal requires, so bundlers see both (each stays external in the CLI bundle).
const Database: typeof BetterSqlite3 = sqliteDriver === 'better-sqlite3-napi' ? require('better-sqlite3-napi') : require('better-sqlite3');
/* eslint-enable @typescript-eslint/no-require-imports */

// The class and, like better-sqlite3's default export, the type of its instances.
type Database = BetterSqlite3.Database;
export default Database;

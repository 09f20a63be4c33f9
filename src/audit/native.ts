/**
 * Loads better-sqlite3, the native module behind SQLite audit logs, on first use only: a bus
 * with `audit: false` (or its own AuditLog) never needs it, so an install that skipped
 * native builds still works there. A module that cannot be loaded becomes one sentence
 * that says what to run, with the loader's own error kept as `cause`.
 */
import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';
import { BusError } from '../errors.js';

/** The better-sqlite3 constructor. */
export type DatabaseConstructor = typeof BetterSqlite3;

const require = createRequire(import.meta.url);
/**
 * better-sqlite3 13 loads its binary on the first `new Database()`, not on require, so the
 * loader opens (and closes) one in-memory database: a missing binary fails here.
 */
const defaultLoader = (): DatabaseConstructor => {
  const Database = require('better-sqlite3') as DatabaseConstructor;
  new Database(':memory:').close();
  return Database;
};

let loader: () => DatabaseConstructor = defaultLoader;
let loaded: DatabaseConstructor | undefined;

/** The message of the error thrown when better-sqlite3 cannot be loaded. */
export const NATIVE_MISSING_MESSAGE =
  'The SQLite audit log could not load the native module better-sqlite3: run `npm rebuild better-sqlite3` ' +
  '(with pnpm, `pnpm approve-builds` then `pnpm rebuild better-sqlite3`; where no prebuilt binary ships it compiles one, ' +
  'which needs python3, make and a C++ compiler), or pass `audit: false` to run without an audit log';

/** The oldest Node major the SQLite audit log runs on (the package's `engines`). */
export const MIN_NODE_MAJOR = 22;

/** The message of the error thrown on a Node older than {@link MIN_NODE_MAJOR}. */
export function oldNodeMessage(version: string): string {
  return (
    `The SQLite audit log needs Node >= ${MIN_NODE_MAJOR}; this is Node ${version}, on which the native module ` +
    'better-sqlite3 crashes the process as it loads. Upgrade Node (22 or newer), or pass `audit: false` to run without an audit log'
  );
}

/**
 * The better-sqlite3 constructor, loaded on the first call.
 * @throws BusError AUDIT_UNAVAILABLE on a Node older than 22, checked before the native
 *   module is touched (it would end the process with a segmentation fault, printing nothing),
 *   or when the module cannot be loaded (`cause`: the loader's error).
 */
export function loadSqlite(nodeVersion: string = process.versions.node): DatabaseConstructor {
  const major = Number.parseInt(nodeVersion, 10);
  if (!(major >= MIN_NODE_MAJOR)) throw new BusError('AUDIT_UNAVAILABLE', oldNodeMessage(nodeVersion));
  if (loaded !== undefined) return loaded;
  try {
    loaded = loader();
  } catch (cause) {
    throw new BusError('AUDIT_UNAVAILABLE', NATIVE_MISSING_MESSAGE, { cause });
  }
  return loaded;
}

/**
 * Replaces how better-sqlite3 is loaded (tests simulate a missing native module with it).
 * Not exported from the package. Pass nothing to restore the real loader.
 */
export function setSqliteLoader(load?: () => DatabaseConstructor): void {
  loader = load ?? defaultLoader;
  loaded = undefined;
}

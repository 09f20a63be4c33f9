// The optional peer dependencies of each subpath, and the check its `import` entry runs
// before loading it: a missing peer is one error that names every package to install,
// rather than Node's ERR_MODULE_NOT_FOUND for whichever one it met first.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

/** Each subpath's optional peers, with the ranges of package.json's peerDependencies. */
export const SUBPATH_PEERS: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  console: { ink: '^8.0.0', react: '^19.0.0' },
  nats: { '@nats-io/transport-node': '^3.0.0', '@nats-io/jetstream': '^3.0.0', '@nats-io/kv': '^3.0.0', '@nats-io/nkeys': '^2.0.0' },
  mcp: { '@modelcontextprotocol/sdk': '^1.17.0' },
  otel: { '@opentelemetry/api': '^1.9.0' },
  ai: { ai: '>=5.0.0 <8' },
  a2a: { '@a2a-js/sdk': '^1.3.0' },
};

/** The code of the error a missing peer gives (not a BusError: nothing was sent). */
export const MISSING_PEER = 'ERR_SWITCHBOARD_MISSING_PEER';

/** The error for `subpath` when `missing` (some of its peers) cannot be found. */
export function missingPeerError(subpath: string, missing: readonly string[]): Error & { code: string; missing: readonly string[] } {
  const peers = SUBPATH_PEERS[subpath] ?? {};
  const all = Object.keys(peers);
  const install = all.map((name) => `"${name}@${peers[name]}"`).join(' ');
  const needs = all.length === 1 ? all[0]! : `${all.slice(0, -1).join(', ')} and ${all.at(-1)!}`;
  const error = new Error(
    `agent-switchboard/${subpath} needs ${needs} (optional peer dependencies, installed by your app); ` +
      `not found: ${missing.join(', ')}. Install them: npm install ${install}`,
  ) as Error & { code: string; missing: readonly string[] };
  error.name = 'MissingPeerDependencyError';
  error.code = MISSING_PEER;
  error.missing = missing;
  return error;
}

/**
 * Throws {@link missingPeerError} when any peer of `subpath` cannot be resolved from `from`
 * (a module URL). Resolution only: nothing is loaded.
 */
export function checkPeers(subpath: string, from: string, resolve: (specifier: string) => unknown = resolverFrom(from)): void {
  const missing = Object.keys(SUBPATH_PEERS[subpath] ?? {}).filter((name) => {
    try {
      resolve(name);
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length > 0) throw missingPeerError(subpath, missing);
}

// A package is found when its package.json is on Node's lookup paths from `from`: found as
// Node finds a package, without its `exports` (some export no root, or no package.json).
function resolverFrom(from: string): (specifier: string) => unknown {
  const paths = createRequire(from).resolve.paths('x') ?? [];
  return (name) => {
    const found = paths.map((dir) => join(dir, name, 'package.json')).find((file) => existsSync(file));
    if (found === undefined) throw new Error(`cannot find ${name}`);
    return found;
  };
}

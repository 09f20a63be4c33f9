// vitest global setup of the `nats` project: one shared nats-server for the NATS suites.
// Without the binary the suites are skipped with a message that says how to install it;
// with CI=true a missing binary fails the run, so a green CI cannot hide them.
import type { TestProject } from 'vitest/node';
import { findNatsServer, INSTALL_HINT, natsServerVersion, startNatsServer, type NatsServer } from './server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    natsUrl: string;
    natsBin: string;
    natsVersion: string;
    natsSkip: string;
  }
}

let server: NatsServer | undefined;

export async function setup(project: TestProject): Promise<void> {
  const bin = findNatsServer();
  if (bin === undefined) {
    if (process.env.CI === 'true') throw new Error(`CI=true and nats-server was not found, so the NATS suites cannot run: ${INSTALL_HINT}`);
    const reason = `nats-server not found: the NATS suites are SKIPPED; ${INSTALL_HINT}`;
    console.warn(`\n[nats] ${reason}\n`);
    project.provide('natsSkip', reason);
    project.provide('natsUrl', '');
    project.provide('natsBin', '');
    project.provide('natsVersion', '');
    return;
  }
  server = await startNatsServer(bin);
  project.provide('natsSkip', '');
  project.provide('natsUrl', server.url);
  project.provide('natsBin', bin);
  project.provide('natsVersion', natsServerVersion(bin).join('.'));
}

export async function teardown(): Promise<void> {
  await server?.dispose();
}

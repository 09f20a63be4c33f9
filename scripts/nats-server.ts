// Starts a real nats-server for the NATS suites, the nodes example and the NATS benches:
// 127.0.0.1, a free port, JetStream in a temp directory, optionally an authorization block.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

/** Where the binary is: `NATS_SERVER`, else `nats-server` on PATH (or /usr/sbin), else undefined. */
export function findNatsServer(): string | undefined {
  const fromEnv = process.env.NATS_SERVER;
  if (fromEnv !== undefined && fromEnv !== '') return existsSync(fromEnv) ? fromEnv : undefined;
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin'];
  for (const dir of dirs) {
    const candidate = join(dir, 'nats-server');
    if (dir !== '' && existsSync(candidate)) return candidate;
  }
  return undefined;
}

export const INSTALL_HINT = 'install it with `apt-get install -y nats-server` (or put a current nats-server on PATH, or set NATS_SERVER=/path/to/nats-server)';

/** The server's version, e.g. [2, 9, 10]. */
export function natsServerVersion(bin: string): [number, number, number] {
  const out = spawnSync(bin, ['--version'], { encoding: 'utf8' }).stdout;
  const m = /v(\d+)\.(\d+)\.(\d+)/.exec(out);
  return m === null ? [0, 0, 0] : [Number(m[1]), Number(m[2]), Number(m[3])];
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface NatsServer {
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  /** Kills the server (SIGTERM, then SIGKILL) and waits for it to exit. Keeps its JetStream dir. */
  stop(): Promise<void>;
  /** Starts it again on the same port and the same JetStream directory. */
  restart(): Promise<void>;
  /** Stops it and removes its temp directory. */
  dispose(): Promise<void>;
}

export interface StartOptions {
  /** An `authorization { … }` block (or any extra config) appended to the config file. */
  extraConfig?: string;
  port?: number;
}

/** Starts nats-server and resolves once it logs that it is ready. */
export async function startNatsServer(bin: string, options: StartOptions = {}): Promise<NatsServer> {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-nats-'));
  const port = options.port ?? (await freePort());
  const config = join(dir, 'server.conf');
  writeFileSync(
    config,
    [`host: "127.0.0.1"`, `port: ${port}`, `jetstream { store_dir: ${JSON.stringify(join(dir, 'js'))} }`, options.extraConfig ?? ''].join('\n'),
  );
  let child: ChildProcess | undefined;

  const launch = () =>
    new Promise<void>((resolve, reject) => {
      const c = spawn(bin, ['-c', config], { stdio: ['ignore', 'ignore', 'pipe'] });
      child = c;
      let log = '';
      const timer = setTimeout(() => fail(new Error(`nats-server did not become ready in 15 s:\n${log}`)), 15_000);
      const fail = (e: Error) => {
        clearTimeout(timer);
        c.kill('SIGKILL');
        reject(e);
      };
      c.stderr!.on('data', (chunk: Buffer) => {
        if (log.length < 64_000) log += chunk.toString();
        if (log.includes('Server is ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
      c.once('exit', (code) => fail(new Error(`nats-server exited with ${code}:\n${log}`)));
      c.once('error', fail);
    });

  const stop = async () => {
    const c = child;
    child = undefined;
    if (c === undefined || c.exitCode !== null || c.pid === undefined) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    process.kill(c.pid, 'SIGTERM');
    const kill = setTimeout(() => c.pid !== undefined && c.exitCode === null && process.kill(c.pid, 'SIGKILL'), 5_000);
    await exited;
    clearTimeout(kill);
  };

  await launch();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    get pid() {
      return child?.pid ?? -1;
    },
    stop,
    restart: launch,
    dispose: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

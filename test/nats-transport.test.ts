import { describe, expect, it } from 'vitest';
import { natsTransport } from '../src/nats/index.js';

describe('natsTransport()', () => {
  it('rejects a misspelled option with INVALID_ARGUMENT naming the key', async () => {
    await expect(natsTransport({ servers: 'nats://127.0.0.1:4222', bus: 'shop', leseMs: 10 } as never)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('"leseMs"') });
  });

  it('rejects a bus name that is not one subject token', async () => {
    await expect(natsTransport({ servers: 'nats://x', bus: 'a.b' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('bus') });
  });

  it('says plainly that it is not wired to the Orchestrator yet', async () => {
    await expect(natsTransport({ servers: ['nats://127.0.0.1:4222'], bus: 'shop' })).rejects.toThrow(/not wired/);
  });
});

import { describe, expect, it } from 'vitest';
import { natsTransport } from '../src/nats/index.js';

describe('natsTransport()', () => {
  it('rejects a misspelled option with INVALID_ARGUMENT naming the key', async () => {
    await expect(natsTransport({ servers: 'nats://127.0.0.1:4222', bus: 'shop', leseMs: 10 } as never)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('"leseMs"') });
  });

  it('rejects a bus name that is not one subject token', async () => {
    await expect(natsTransport({ servers: 'nats://x', bus: 'a.b' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('bus') });
  });

  it('rejects with TRANSPORT_UNAVAILABLE naming the servers when no broker answers', async () => {
    await expect(natsTransport({ servers: ['nats://127.0.0.1:1'], bus: 'shop', insecure: true, connectTimeoutMs: 500 })).rejects.toMatchObject({
      code: 'TRANSPORT_UNAVAILABLE',
      message: expect.stringContaining('nats://127.0.0.1:1'),
    });
  });
});

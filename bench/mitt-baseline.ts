// The floor a user could hand-roll: mitt events plus a map of pending requests. No ids
// beyond a counter, no checks, no copies, no audit, no deadlines.
import mittModule, { type Emitter } from 'mitt';

const mitt = ((mittModule as unknown as { default?: unknown }).default ?? mittModule) as unknown as <T extends Record<string, unknown>>() => Emitter<T>;

type Events = {
  request: { id: number; payload: unknown };
  response: { id: number; payload: unknown };
};

export function mittRequestReply(handler: (payload: unknown) => unknown): { ask(payload: unknown): Promise<unknown>; close(): Promise<void> } {
  const emitter = mitt<Events>();
  const pending = new Map<number, (value: unknown) => void>();
  let next = 0;
  emitter.on('request', ({ id, payload }) => emitter.emit('response', { id, payload: handler(payload) }));
  emitter.on('response', ({ id, payload }) => {
    const resolve = pending.get(id);
    pending.delete(id);
    resolve?.(payload);
  });
  return {
    ask(payload) {
      return new Promise((resolve) => {
        const id = next++;
        pending.set(id, resolve);
        emitter.emit('request', { id, payload });
      });
    },
    async close() {
      emitter.all.clear();
    },
  };
}

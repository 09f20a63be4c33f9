// Closed-loop askers for the benches and measurement scripts: each lane sends its next ask
// as soon as the previous one answers, so the bus is never idle and never flooded.
import type { Orchestrator } from '../src/index.js';

/** `total` asks from `lanes` lanes sharing one counter; resolves when all have answered. */
export async function closedLoop(ask: () => Promise<unknown>, total: number, lanes = 1000): Promise<void> {
  let sent = 0;
  const lane = async () => {
    while (sent < total) {
      sent++;
      await ask();
    }
  };
  await Promise.all(Array.from({ length: lanes }, lane));
}

/**
 * `senders` agents (`sender-0`, …), each asking `echo` `ping` in a closed loop until `stop()`,
 * which resolves once every lane's last ask has answered. `asks()` counts the answers so far.
 */
export function askersUntilStopped(bus: Orchestrator, senders = 256): { asks(): number; stop(): Promise<void> } {
  let stopped = false;
  let asks = 0;
  const text = 'x'.repeat(100);
  const loops = Array.from({ length: senders }, async (_, i) => {
    const sender = bus.register(`sender-${i}`);
    while (!stopped) {
      await sender.ask('echo', 'ping', { i, text });
      asks++;
    }
  });
  return {
    asks: () => asks,
    stop: async () => {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

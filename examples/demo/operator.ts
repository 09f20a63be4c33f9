// The human in the loop, kept simple: a scripted operator for CI and pipes, or one
// question on the terminal (the full approval console is `--interactive`, the web page `--web`).
import { userInfo } from 'node:os';
import { createInterface } from 'node:readline/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PendingApproval } from '../../src/index.js';

/** What the operator decided about one held message. */
export interface Decision {
  approve: boolean;
  by: string;
  reason?: string;
}

export interface Operator {
  decide(approval: PendingApproval): Promise<Decision>;
}

/** One line describing a held message, for a human. */
export function describeApproval(a: PendingApproval): string {
  const e = a.envelope;
  const seconds = Math.max(0, Math.round((a.expiresAt - Date.now()) / 1000));
  return `${e.from} wants to ${e.type} "${e.intent}" to ${e.to} with ${JSON.stringify(e.payload)} (${a.payloadBytes} bytes, expires in ${seconds} s)`;
}

/** Approves everything after a short pause, and says so. */
export function scriptedOperator(say: (text: string) => void, name = 'demo-operator', pauseMs = 300): Operator {
  return {
    async decide(approval) {
      say(`${describeApproval(approval)}`);
      say(`auto-deciding (not a terminal, or --auto): ${name} approves in ${pauseMs} ms`);
      await sleep(pauseMs);
      return { approve: true, by: name };
    },
  };
}

/** Asks `approve? [y/N]` on the terminal; no answer within `timeoutMs` counts as no. */
export function promptOperator(say: (text: string) => void, name = whoAmI(), timeoutMs = 30_000): Operator {
  return {
    async decide(approval) {
      say(describeApproval(approval));
      const rl = createInterface({ input: process.stdin, output: process.stdout });
      try {
        const answer = await rl.question(`approve? [y/N] (${timeoutMs / 1000} s) `, { signal: AbortSignal.timeout(timeoutMs) });
        const approve = /^y(es)?$/i.test(answer.trim());
        return approve ? { approve, by: name } : { approve, by: name, reason: 'the operator said no' };
      } catch {
        process.stdout.write('\n');
        return { approve: false, by: name, reason: `no answer within ${timeoutMs / 1000} s` };
      } finally {
        rl.close();
      }
    },
  };
}

function whoAmI(): string {
  try {
    return userInfo().username || 'operator';
  } catch {
    return 'operator';
  }
}

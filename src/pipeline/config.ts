import type { HoldStore } from '../audit/types.js';
import type { Clock } from '../clock.js';
import type { Contracts } from '../contracts.js';
import type { BusEmitter } from '../events.js';
import type { GroupCommit } from '../group-commit.js';
import type { RateSpec, TokenBucket } from '../limits.js';
import type { PolicyStore } from '../policy-store.js';
import type { Telemetry } from '../telemetry-port.js';
import type { InboundShareSpec } from './inbound-share.js';
import type { AgentRecord } from './records.js';
import type { RefusalSummaries } from './refusal-summary.js';
import type { Transport } from './transport.js';

/** What the pipeline is given by the orchestrator; it never reaches back into it. */
export interface PipelineConfig {
  /** This node's local agents. */
  readonly registry: ReadonlyMap<string, AgentRecord>;
  readonly policy: PolicyStore;
  readonly commit: GroupCommit;
  readonly events: BusEmitter;
  readonly clock: Clock;
  readonly nextId: () => string;
  readonly contracts: Contracts | undefined;
  readonly maxPayloadBytes: number;
  readonly maxDepth: number;
  readonly askMs: number;
  readonly delegateMs: number;
  readonly approvalTtlMs: number;
  readonly maxPending: number;
  readonly maxPendingPerSender: number;
  readonly globalRate: TokenBucket | undefined;
  /** Capture each ask's call site for its TIMEOUT stack. */
  readonly callSites: boolean;
  /** How messages reach agents of other nodes (in-process: there are none). */
  readonly transport: Transport;
  /** Where sends, runs and refusals are reported (already guarded: its calls never throw). */
  readonly telemetry: Telemetry;
  /** This node's id, recorded on the audit rows of messages that cross nodes. */
  readonly node: string;
  /** The bucket each remote sender gets at this node (`limits.rate`), or false for none. */
  readonly remoteRate: RateSpec | false;
  /** The trust this node grants other nodes' agents (`remoteTrust`); 0 for any other. */
  readonly remoteTrust: ReadonlyMap<string, number>;
  /** Each peer node's fair share of this node (`limits.inboundPerNode`), or false for none. */
  readonly inboundShare: InboundShareSpec | false;
  /** Where refusal rows go: one by one within a sender's rate, counted in one row beyond it. */
  readonly refusals: RefusalSummaries;
  /**
   * The audit log when it can be asked about one message (`result()`); it keeps held messages
   * (durable approvals) when `keepsHolds` (a file). Undefined for a custom log or none.
   */
  readonly holdStore: HoldStore | undefined;
}

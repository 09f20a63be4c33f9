import type { PipelineConfig } from './config.js';
import type { Deliveries } from './delivery.js';
import type { Journal } from './journal.js';
import type { Ledger } from './ledger.js';

// The pipeline's parts are wired through one object instead of positional arguments: the
// Pipeline builds each part in turn and hands the next one what is built so far.

/** What every part is built from: the orchestrator's config, the journal and the ledger. */
export interface CoreParts {
  readonly config: PipelineConfig;
  readonly journal: Journal;
  readonly ledger: Ledger;
}

/** The core parts and the deliveries: what the approval flow and the cross-node sides need. */
export interface PipelineParts extends CoreParts {
  readonly deliveries: Deliveries;
}

import type { AfterCommit } from './after-commit.js';
import type { PipelineConfig } from './config.js';
import type { Journal } from './journal.js';
import type { Ledger } from './ledger.js';

// The pipeline's parts are wired through one object instead of positional arguments: the
// Pipeline builds each part in turn and hands the next one what is built so far
// (`PipelineParts`, with the deliveries, is beside `Deliveries` in delivery.ts).

/** What every part is built from: the orchestrator's config, the journal, the ledger, and what follows a commit. */
export interface CoreParts {
  readonly config: PipelineConfig;
  readonly journal: Journal;
  readonly ledger: Ledger;
  readonly after: AfterCommit;
}

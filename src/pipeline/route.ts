import type { PolicyDecision } from '../policy.js';
import type { AgentRecord } from './records.js';

/**
 * Where an admitted message goes next, decided in this one place for every entry point
 * (a request, each copy of a notify, a message from another node): `carry` it to the node
 * that serves its recipient (whose own policy decides again, approvals included), `hold`
 * it for a human, or `deliver` it here.
 */
export type Route = 'carry' | 'hold' | 'deliver';

export function routeOf(recipient: AgentRecord, decision: PolicyDecision): Route {
  if (recipient.node !== undefined) return 'carry';
  return decision.decision === 'approval' ? 'hold' : 'deliver';
}

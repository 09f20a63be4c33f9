import type { PolicyDecision } from '../policy.js';
import type { AgentRecord } from './records.js';

/**
 * Where an admitted message goes next, decided in this one place for every entry point
 * (a request, each copy of a notify, a message from another node): `hold` it for a human
 * when this node's policy asks for approval (also on its way to another node: this node's
 * approval comes first, and it is carried once approved), else `carry` it to the node that
 * serves its recipient (whose own policy decides again, approvals included), or `deliver`
 * it here. The stricter of both nodes' decisions holds.
 */
export type Route = 'carry' | 'hold' | 'deliver';

export function routeOf(recipient: AgentRecord, decision: PolicyDecision): Route {
  if (decision.decision === 'approval') return 'hold';
  return recipient.node !== undefined ? 'carry' : 'deliver';
}

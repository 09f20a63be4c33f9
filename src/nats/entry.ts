// The `import` entry of agent-switchboard/nats (package.json exports): its optional peers are
// checked first, so a missing one is an error naming every package to install; then the
// subpath itself is loaded. `require()` and the types use index.ts directly. The names
// below are index.ts's runtime exports (test/peers.test.ts keeps them equal).
import { checkPeers } from '../peers.js';

checkPeers('nats', import.meta.url);

export const { natsTransport, checkRoster, loadRoster, fleetApprovals } = await import('./index.js');

// What a NATS suite needs from the global setup.
import { inject } from 'vitest';

/** The reason the NATS suites are skipped, or '' when a server runs. */
export const skip = inject('natsSkip');
export const natsUrl = inject('natsUrl');
export const natsBin = inject('natsBin');
export const natsVersion = inject('natsVersion');

// The suites' nats-server helpers live in scripts/ (the nodes example and the NATS bench use them too).
export * from '../../scripts/nats-server.js';

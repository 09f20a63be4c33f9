// agent-switchboard/transport: for those who implement a transport (the seam to other
// nodes). Users pass a transport to `new Orchestrator({ transport })`, e.g. natsTransport()
// from agent-switchboard/nats; only its authors need these names. See docs/architecture.md.
export {
  InProcessTransport,
  type Transport,
  type Location,
  type RemoteAgent,
  type OutboundMessage,
  type OutboundSink,
  type OutboundHandle,
  type InboundMessage,
  type InboundPort,
  type ApprovalDeskPort,
  type InboundHandle,
  type Responder,
} from '../pipeline/transport.js';

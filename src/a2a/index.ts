// agent-switchboard/a2a: agents of other frameworks at the edge of a bus, over the Agent2Agent
// protocol on the official `@a2a-js/sdk` (an optional peer dependency used only here).
// See docs/a2a.md.
export { a2aServer, RPC_PATH, type A2aBus, type A2aServerHandle, type A2aServerOptions } from './server.js';
export { a2aAgent, type A2aAgentOptions, type A2aAgentRegistration } from './agent.js';
export { SCHEMA_EXTENSION_URI, type CardOverrides } from './card.js';

// agent-switchboard/otel: OpenTelemetry traces and metrics for the bus, on @opentelemetry/api
// (an optional peer dependency used only here). See docs/observability.md.
export { openTelemetry, type OpenTelemetryOptions } from './telemetry.js';
export { formatTraceparent, parseTraceparent } from './traceparent.js';
export { METRIC, SYSTEM } from './attributes.js';
// The Telemetry port, for a telemetry of your own: its only home.
export { NOOP_TELEMETRY, traceparentOf, type CommitInfo, type RefusalInfo, type RunToken, type SendDraft, type SendToken, type Telemetry, type TracedEnvelope } from '../telemetry-port.js';

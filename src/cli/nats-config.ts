/**
 * `switchboard nats-config <fleet.json>`: the earlier name of `switchboard fleet init`, kept
 * as an alias (see `./fleet.ts`).
 */
export { FLEET_INIT_HELP as NATS_CONFIG_HELP, runFleetInit as runNatsConfig, type FleetIO as NatsConfigIO } from './fleet.js';

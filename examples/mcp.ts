// The bus and MCP, both ways: `npm run example:mcp`.
//
// 1. mcpServer(): the "assistant" agent's permitted intents become an MCP server's tools. An
//    MCP host (Claude Desktop, an IDE, an agent framework) would connect over stdio; here the
//    MCP SDK's own client connects in memory and plays the model's part. It calls a permitted
//    tool, then one whose rule was revoked: that comes back as a tool result with
//    isError: true and the text "POLICY_DENIED: …", which is what a model reads.
// 2. mcpHandlers(): an MCP server's tools (a small "files" server made with the SDK) become
//    the handlers of a bus agent, so other agents reach them by intent, through the policy
//    and into the audit log: the analyst may read files, the intern may not.
// No network, no API key. Inside this repository the imports are '../src/…'; in your app
// 'agent-switchboard' and 'agent-switchboard/mcp'.
import { pathToFileURL } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { mcpHandlers, mcpServer } from '../src/mcp/index.js';
import { defineContracts, isBusError, Orchestrator, type PolicyRule } from '../src/index.js';

const contracts = defineContracts({
  lookup: { type: 'ask', input: z.object({ sku: z.string() }), output: z.object({ sku: z.string(), stock: z.number() }) },
});

const POLICIES: PolicyRule[] = [
  { from: 'assistant', to: 'inventory', allow: ['ask'], intents: ['lookup'] },
  { from: 'analyst', to: 'files', allow: ['ask'] },
];

export interface McpExampleResult {
  tools: string[];
  allowed: CallToolResult;
  refused: CallToolResult;
  fileText: unknown;
  internRefused: string | undefined;
}

async function linked(server: { connect(t: InMemoryTransport): Promise<void> }, name: string): Promise<Client> {
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  const client = new Client({ name, version: '1.0.0' });
  await Promise.all([server.connect(serverSide), client.connect(clientSide)]);
  return client;
}

const text = (r: CallToolResult) => r.content.map((p) => (p.type === 'text' ? p.text : `[${p.type}]`)).join('');

export async function run(out: (line: string) => void = console.log): Promise<McpExampleResult> {
  const bus = new Orchestrator({ policies: POLICIES, contracts });
  const stock: Record<string, number> = { 'KB-42': 7 };
  bus.register('inventory', { handlers: { lookup: ({ sku }) => ({ sku, stock: stock[sku] ?? 0 }) } });
  const assistant = bus.register('assistant');

  // A separate MCP tool server, as a third party would ship it.
  const files = new McpServer({ name: 'files', version: '1.0.0' });
  files.registerTool('read_file', { description: 'Reads a file', inputSchema: { path: z.string() } }, ({ path }) => ({
    content: [{ type: 'text', text: path === 'README' ? 'Shop handbook v2' : '' }],
  }));
  const filesClient = await linked(files, 'bus');
  const host = await linked(mcpServer(assistant, { bus, contracts }), 'mcp-host');

  try {
    out('mcp, part 1: an agent as an MCP server');
    const { tools } = await host.listTools();
    out(`  tools/list → ${tools.map((t) => t.name).join(', ')}`);
    const allowed = (await host.callTool({ name: 'ask_inventory_lookup', arguments: { sku: 'KB-42' } })) as CallToolResult;
    out(`  tools/call ask_inventory_lookup → ${text(allowed)}`);
    bus.setPolicies(POLICIES.filter((r) => r.from !== 'assistant')); // the operator revokes the rule
    const refused = (await host.callTool({ name: 'ask_inventory_lookup', arguments: { sku: 'KB-42' } })) as CallToolResult;
    out(`  after the rule is revoked → isError: ${refused.isError}, "${text(refused)}"`);

    out('mcp, part 2: an MCP server as an agent');
    // The files agent's intents are not in the contracts: other agents reach them with send().
    bus.register('files', { handlers: await mcpHandlers(filesClient), capabilities: ['files'] });
    const analyst = bus.register('analyst');
    const intern = bus.register('intern');
    const fileText = await analyst.send({ type: 'ask', to: 'files', intent: 'read_file', payload: { path: 'README' } });
    out(`  analyst asks files read_file → ${JSON.stringify(fileText)}`);
    let internRefused: string | undefined;
    try {
      await intern.send({ type: 'ask', to: 'files', intent: 'read_file', payload: { path: 'README' } });
    } catch (e) {
      if (!isBusError(e)) throw e;
      internRefused = e.code;
      out(`  intern asks files read_file → ${e.code}`);
    }

    out('audit (oldest first):');
    for (const e of bus.getMessageLog({ limit: 20 }).reverse()) {
      out(`  ${e.from} → ${e.to} ${e.type} ${e.intent}: ${e.decision}${e.outcome ? `, ${e.outcome}` : ''}${e.code ? ` (${e.code})` : ''}`);
    }
    return { tools: tools.map((t) => t.name), allowed, refused, fileText, internRefused };
  } finally {
    await host.close();
    await filesClient.close();
    await bus.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await run();

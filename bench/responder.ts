// The answering side of a `npm run bench:nodes -- --split` row, in a process of its own (as a
// fleet's nodes and a NATS service run): bare NATS's responder, or node `bench-b` serving
// `echo`. Told what to run by one JSON argument; prints `ready` once serving, and closes when
// its stdin ends.
import { natsResponder } from './nats-baseline.js';
import { makeNode, serveEcho, type PairSetup } from './node-pair.js';

type Job = { kind: 'bare'; url: string; subject: string } | { kind: 'node'; setup: PairSetup };

const job = JSON.parse(process.argv[2]!) as Job;
let close: () => Promise<void>;
if (job.kind === 'bare') {
  close = await natsResponder(job.url, job.subject);
} else {
  const b = await makeNode(job.setup, 'bench-b');
  serveEcho(b);
  await b.ready();
  close = () => b.close();
}
process.stdout.write('ready\n');
process.stdin.resume();
process.stdin.on('end', () => {
  void close().then(() => process.exit(0));
});

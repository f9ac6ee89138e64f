// Writes docs/trace-sample.ndjson: the trace of a real restore of the demo tree (what
// `pidfd-cr demo --trace-file F` writes), during which a process that is no worker sends
// one frame to the coordinator's control socket, so that the sample holds every event kind
// (`frame-ignored` too). Run `npm run docs:trace-sample` (as root, like the demo) after
// changing what the trace records; test/unit/trace-doc.test.ts checks the sample against
// docs/trace.md and the reader.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Dealer } from 'zeromq';
import { buildTree, DEMO_TREE } from '../dist/src/testing/index.js';
import { dumpTree } from '../dist/src/dump/index.js';
import { restoreImage } from '../dist/src/restore/restore-image.js';
import { fileTraceSink } from '../dist/src/restore/trace-sinks.js';
import { prctl, PR_SET_CHILD_SUBREAPER } from '../dist/native/index.js';

const out = process.argv[2] ?? new URL('../docs/trace-sample.ndjson', import.meta.url).pathname;

/** Once the coordinator is registering: a stray peer sends one frame that is no message. */
async function strayFrame(runDirParent) {
  const name = readdirSync(runDirParent).find((n) => n.startsWith('pcr-'));
  const dealer = new Dealer({ routingId: 'stray', linger: 0 });
  dealer.connect(`ipc://${join(runDirParent, name, 'ctl')}`);
  await dealer.send(Buffer.from('not a protobuf frame'));
  setTimeout(() => dealer.close(), 200);
}

prctl(PR_SET_CHILD_SUBREAPER, 1);
const tree = await buildTree(DEMO_TREE);
const work = mkdtempSync(join(tmpdir(), 'pcr-trace-sample-'));
try {
  const image = await dumpTree(tree.rootPid);
  for (let attempt = 1; ; attempt++) {
    const file = fileTraceSink(out);
    let sent = false;
    const result = await restoreImage(image, {
      runDirParent: work,
      trace: (e) => {
        file.sink(e);
        if (!sent && e.source === 'coordinator' && e.to === 'registering') {
          sent = true;
          void strayFrame(work);
        }
      },
    });
    file.close();
    if (!result.ok) throw new Error(`the demo restore failed verification`);
    if (readFileSync(out, 'utf8').includes('"kind":"frame-ignored"')) break;
    if (attempt === 5) throw new Error('the stray frame never reached the restore');
  }
  console.log(`wrote ${out}`);
} finally {
  await tree.destroy();
  rmSync(work, { recursive: true, force: true });
}

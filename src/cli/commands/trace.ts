/**
 * `pidfd-cr trace FILE [--format html|chrome|text] [-o OUT]`: a restore's trace file
 * (`restore --trace-file`, docs/trace.md) as the offline HTML page, Chrome Trace Event
 * JSON (Perfetto, chrome://tracing) or the sorted text timeline. See docs/viz.md.
 */
import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { PcrError, UsageError } from '../../errors.js';
import { readTraceFile } from '../../viz/read.js';
import { buildTimeline } from '../../viz/model.js';
import { toChromeTrace } from '../../viz/chrome.js';
import { toText } from '../../viz/text.js';
import { renderTimelinePage } from '../../viz/html.js';

const HELP = `usage: pidfd-cr trace FILE [--format html|chrome|text] [-o OUT]

Reads the NDJSON trace FILE of a restore (restore --trace-file, schema docs/trace.md)
and writes it to OUT (default stdout) as:
  html    one self-contained offline page: both statecharts with what the run visited,
          a timeline with one lane per task, fd transfers, temporary processes, zombies,
          a scrubber, and where and why a failed restore failed (default)
  chrome  Chrome Trace Event JSON for https://ui.perfetto.dev or chrome://tracing
  text    the time-sorted timeline that restore --trace prints
  -f, --format F  html, chrome or text
  -o, --output OUT  the file to write (default: stdout)
A file that is not a v1 trace exits 14 with one line naming the line at fault; a cut-off
last line, unknown event kinds or tasks are listed on the page (and on stderr).
`;

const FORMATS = ['html', 'chrome', 'text'] as const;

export async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        format: { type: 'string', short: 'f' },
        output: { type: 'string', short: 'o' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: true,
    });
  } catch (err) {
    throw new UsageError(`trace: ${(err as Error).message.split('\n').join(' ')}`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError('trace: give exactly one trace FILE');
  const format = values.format ?? 'html';
  if (!(FORMATS as readonly string[]).includes(format))
    throw new UsageError(`trace: --format must be html, chrome or text, got '${format}'`);
  if (values.output === '') throw new UsageError("trace: -o needs a file name, got ''");
  const file = positionals[0]!;
  const { events, warnings } = readTraceFile(file);
  let out: string;
  if (format === 'text') {
    out = toText(events);
  } else {
    const tl = buildTimeline(events, warnings);
    out =
      format === 'chrome'
        ? JSON.stringify(toChromeTrace(tl)) + '\n'
        : await renderTimelinePage(tl, { title: `pidfd-cr restore (${file})`, warnings: [] });
    warnings.splice(0, warnings.length, ...tl.warnings);
  }
  for (const w of warnings) process.stderr.write(`pidfd-cr: trace ${file}: ${w}\n`);
  if (values.output === undefined) {
    process.stdout.write(out);
  } else {
    try {
      writeFileSync(values.output, out);
    } catch (err) {
      throw new PcrError('PCR_ERR_USAGE', `trace: -o ${values.output}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
  return 0;
}

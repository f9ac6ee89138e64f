/** `pidfd-cr check [--json]`: probe what dump and restore can do here, as `criu check`. */
import { EXIT_CODES } from '../../errors.js';
import { parseCommandArgs } from '../args.js';
import { runCheck, formatCheck, missingFeatures } from '../../check/index.js';

const HELP = `usage: pidfd-cr check [--json]

Probes, on real processes, what this machine's kernel and permissions allow: pidfd_open,
PIDFD_THREAD, PIDFD_GET_INFO with exit information, pidfs file handles, kcmp, SCM_RIGHTS,
ptrace (and Yama's ptrace_scope), PR_SET_CHILD_SUBREAPER, ns_last_pid and clone3 set_tid,
ZeroMQ ipc; then says which features of dump and restore work here.
      --json      the JSON form documented in docs/cli.md (schema v 1)
Exit statuses: 0 everything dump and restore need works; 17 something they need does
not (named on stderr).
`;

export async function run(argv: string[]): Promise<number> {
  const values = parseCommandArgs('check', argv, {
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const report = await runCheck();
  process.stdout.write(values.json ? JSON.stringify(report, null, 2) + '\n' : formatCheck(report));
  if (report.ok) return 0;
  process.stderr.write(
    `pidfd-cr: check: dump or restore cannot work fully here: ${missingFeatures(report).join('; ')}\n`,
  );
  return EXIT_CODES.PCR_ERR_CHECK;
}

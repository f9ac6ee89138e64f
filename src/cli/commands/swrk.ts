/**
 * `pidfd-cr swrk FD`: serve a host over the SOCK_SEQPACKET socket it passed as fd FD
 * (proto/swrk.proto, docs/embedding.md), as `criu swrk`. Ends when the host closes its
 * end; SIGTERM or SIGINT stop what runs (the tree is taken down) and end it too.
 */
import { UsageError } from '../../errors.js';
import { socketType, SOCKET_SEQPACKET } from '../../../native/index.js';
import { serveSwrk } from '../../swrk/service.js';

const HELP = `usage: pidfd-cr swrk FD

Serves protobuf requests (proto/swrk.proto: DUMP, RESTORE, CHECK, VERSION, NOTIFY
answers, TEARDOWN) on the AF_UNIX SOCK_SEQPACKET socket inherited as fd FD, one message
each, until the host closes its end. See docs/embedding.md.
`;

export async function run(argv: string[]): Promise<number> {
  if (argv.length === 1 && (argv[0] === '--help' || argv[0] === '-h')) {
    process.stdout.write(HELP);
    return 0;
  }
  if (argv.length !== 1) throw new UsageError('swrk: needs exactly one argument, the socket fd');
  const arg = argv[0]!;
  if (!/^[0-9]+$/.test(arg) || !Number.isSafeInteger(Number(arg)))
    throw new UsageError(`swrk: the socket fd must be a number, got '${arg}'`);
  const fd = Number(arg);
  if (fd <= 2) throw new UsageError(`swrk: fd ${fd} is stdin, stdout or stderr`);
  let type: number;
  try {
    type = socketType(fd);
  } catch (err) {
    throw new UsageError(`swrk: fd ${fd}: ${(err as Error).message}`);
  }
  if (type !== SOCKET_SEQPACKET)
    throw new UsageError(`swrk: fd ${fd} is not a SOCK_SEQPACKET socket (type ${type})`);
  const controller = new AbortController();
  const stop = () => controller.abort('signal');
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  try {
    await serveSwrk(fd, controller.signal);
  } finally {
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
  }
  return 0;
}

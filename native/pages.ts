/**
 * Anonymous pages of our own (mmap), for the machine code that clone3.ts and tiny.ts run
 * in their children and for a tiny child's request page. Never unmapped: a child may
 * still run or read them.
 */
import { libc, check } from './libc.js';
import koffi from 'koffi';

const PROT_READ = 1;
const PROT_WRITE = 2;
const PROT_EXEC = 4;
const MAP_PRIVATE = 0x02;
const MAP_ANONYMOUS = 0x20;
const MAP_FAILED = 0xffffffffffffffffn;
export const PAGE = 4096;

/** One private anonymous page, read-write. `what` names it in the error. */
export function mapPage(what: string): unknown {
  const ptr = libc.mmap(null, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (koffi.address(ptr) === MAP_FAILED) check(-1, 'mmap', what);
  return ptr;
}

/** A page holding `code`, then made read + execute (never writable again). */
export function codePage(code: Buffer, what: string): unknown {
  const ptr = mapPage(what);
  Buffer.from(koffi.view(ptr, PAGE)).set(code);
  check(libc.mprotect(ptr, PAGE, PROT_READ | PROT_EXEC), 'mprotect', what);
  return ptr;
}

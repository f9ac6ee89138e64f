import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { EXIT_CODES, PcrError, exitCodeFor, SyscallError } from '../../src/errors.js';

test('every error code has a distinct exit status', () => {
  const statuses = Object.values(EXIT_CODES);
  assert.equal(new Set(statuses).size, statuses.length);
  assert.ok(statuses.every((s) => s > 0 && s < 128));
});

test('exitCodeFor maps PcrErrors by code and anything else to internal', () => {
  assert.equal(exitCodeFor(new PcrError('PCR_ERR_USAGE', 'x')), 2);
  assert.equal(exitCodeFor(new SyscallError('kcmp', 1, 'EPERM')), EXIT_CODES.PCR_ERR_SYSCALL);
  assert.equal(exitCodeFor(new Error('boom')), 70);
});

test('SyscallError names the syscall and the errno', () => {
  const e = new SyscallError('pidfd_open', 3, 'ESRCH', 'pid 42');
  assert.equal(e.message, 'pidfd_open (pid 42) failed: ESRCH (3)');
  assert.equal(e.code, 'PCR_ERR_SYSCALL');
});

test('the exit status table of docs/cli.md lists exactly the error codes of src/errors.ts', () => {
  const doc = readFileSync(new URL('../../../docs/cli.md', import.meta.url), 'utf8');
  const rows = [...doc.matchAll(/^\|\s*(\d+)\s*\|\s*`(PCR_ERR_[A-Z_]+)`\s*\|/gm)].map((m) => [
    m[2],
    Number(m[1]),
  ]);
  assert.deepEqual(
    Object.fromEntries(rows),
    EXIT_CODES,
    'docs/cli.md "Exit statuses" and EXIT_CODES differ',
  );
  assert.equal(rows.length, Object.keys(EXIT_CODES).length, 'a code is listed twice');
});

test('every error the library and native layer throw carries a code (no plain Error)', () => {
  const offenders: string[] = [];
  const walk = (dir: URL): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const url = new URL(e.name + (e.isDirectory() ? '/' : ''), dir);
      if (e.isDirectory()) walk(url);
      else if (/\.c?ts$/.test(e.name)) {
        const text = readFileSync(url, 'utf8');
        for (const m of text.matchAll(/throw new (Error|RangeError|TypeError)\(/g))
          offenders.push(`${url.pathname}: ${m[0]}`);
      }
    }
  };
  for (const dir of ['../../../src/', '../../../native/']) walk(new URL(dir, import.meta.url));
  assert.deepEqual(offenders, []);
});

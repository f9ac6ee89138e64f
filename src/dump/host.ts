/** The host context recorded in every image. */
import { readFileSync } from 'node:fs';
import type { HostContext } from '../model/image.js';
import { bootId, hostName, kernelRelease } from '../procfs/index.js';

export const FREEZE_METHOD = 'ptrace-seize';

let version: string | undefined;

/** The version in package.json (dist/src/dump → ../../../package.json). */
export function toolVersion(): string {
  if (version === undefined) {
    const url = new URL('../../../package.json', import.meta.url);
    version = (JSON.parse(readFileSync(url, 'utf8')) as { version: string }).version;
  }
  return version;
}

export function hostContext(now: number = Date.now()): HostContext {
  return {
    bootId: bootId(),
    kernelRelease: kernelRelease(),
    dumpTimeMs: now,
    toolVersion: toolVersion(),
    freezeMethod: FREEZE_METHOD,
    hostname: hostName(),
  };
}

/** Facts about the running kernel that an image records (read-only). */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

const firstLine = (path: string): string => readFileSync(path, 'utf8').trim();

/** /proc/sys/kernel/random/boot_id: pidfs inos are only meaningful within one boot. */
export const bootId = (): string => firstLine('/proc/sys/kernel/random/boot_id');

export const kernelRelease = (): string => firstLine('/proc/sys/kernel/osrelease');

export const hostName = (): string => hostname();

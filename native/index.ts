/** The native surface of pidfd-cr: small typed wrappers over libc (see libc.ts). */
export * from './pidfd.js';
export * from './fd.js';
export * from './fdpass.js';
export * from './stream.js';
export * from './process.js';
export * from './random.js';
export { errnoName, errnoNumber, uvPoll, type UvPollHandle } from './libc.js';
export * from './exec.js';
export * from './clone3.js';
export * from './mount.js';
export * from './tiny.js';

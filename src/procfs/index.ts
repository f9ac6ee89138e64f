/** Typed, side-effect-free readers of /proc (see docs/dump.md). */
export * from './parse.js';
export * from './read.js';
export * from './host.js';
export { isGone } from './errors.js';

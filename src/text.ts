/** Small text helpers for messages and summaries. */

/** `1 task`, `2 tasks`: a count with its noun. */
export const count = (n: number, singular: string, plural = `${singular}s`): string =>
  `${n} ${n === 1 ? singular : plural}`;

/**
 * A name taken from the kernel (a task's comm: any bytes but NUL, set by the task itself
 * with PR_SET_NAME) made safe for a terminal line: control characters and backslash as
 * `\xNN` escapes, so a hostile comm cannot forge lines or terminal sequences.
 */
export const printable = (s: string): string =>
  s.replace(
    /[\x00-\x1f\x7f-\x9f\\]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`,
  );

/**
 * Any value as text for a message, never throwing: String() throws for an object without
 * a prototype or with a throwing toString, and an abort reason or a thrown value may be
 * anything. An Error gives its message.
 */
export function textOf(value: unknown): string {
  try {
    return value instanceof Error ? value.message : String(value);
  } catch {
    try {
      return Object.prototype.toString.call(value);
    } catch {
      return '(unprintable value)';
    }
  }
}

/** A value as a message shows it: strings quoted, anything else as textOf. */
export const describe = (value: unknown): string =>
  typeof value === 'string' ? `'${value}'` : textOf(value);

/** `1 task`, `2 tasks`: a count with its noun, for messages and summaries. */
export const count = (n: number, singular: string, plural = `${singular}s`): string =>
  `${n} ${n === 1 ? singular : plural}`;

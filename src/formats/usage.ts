/**
 * Token counts as the gateway uses them. A provider's usage is its own JSON: a count that is not
 * a non-negative finite number (a string, -1e9, 1e999) counts as 0, so no provider can move a
 * budget backwards or put Infinity into a metric.
 */
export function tokenCount(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? Math.floor(value) : 0;
}

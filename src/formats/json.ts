/**
 * Reading JSON that came from a client or a provider: nothing in it can be trusted to have the
 * shape it should.
 */

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * `table[name]` for a name that comes from a client or a provider: own entries only, so
 * `constructor`, `toString` or `__proto__` find nothing instead of Object.prototype's members.
 */
export function entryOf<T>(table: Readonly<Record<string, T>>, name: string): T | undefined {
  return Object.hasOwn(table, name) ? table[name] : undefined;
}

/**
 * A key's model map: the names clients ask for → the names a target is sent.
 */

/** A key's model names → the target's: exact names, then the longest matching `prefix*`, then `*`. */
export interface ModelMap {
  map(model: string): string;
  /** The exact names it maps (its patterns cannot be listed). */
  readonly names: readonly string[];
  /** The map as text, the same for the same entries in any order (it tells targets apart). */
  readonly text: string;
}

export function modelMap(entries: Readonly<Record<string, string>>): ModelMap {
  const exact = new Map<string, string>();
  const prefixes: Array<[string, string]> = [];
  for (const [pattern, model] of Object.entries(entries)) {
    if (pattern.endsWith('*')) prefixes.push([pattern.slice(0, -1), model]);
    else exact.set(pattern, model);
  }
  // Longest prefix first: `claude-3-haiku*` wins over `claude-*`, which wins over `*`.
  prefixes.sort((a, b) => b[0].length - a[0].length);
  return {
    map: (model) => exact.get(model) ?? prefixes.find(([prefix]) => model.startsWith(prefix))?.[1] ?? model,
    names: [...exact.keys()],
    text: JSON.stringify(Object.entries(entries).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
  };
}

/**
 * The known name a typo most likely meant (`mokc` → `mock`, `OpenAI` → `openai`), or null when
 * none is close: a suggestion in a configuration error.
 */
export function closestName(typed: string, known: readonly string[]): string | null {
  const lower = typed.toLowerCase();
  // At most two edits, and fewer than half the name: "x" is not a typo of "mock".
  const limit = Math.min(2, Math.floor(lower.length / 2));
  let best: string | null = null;
  let bestDistance = limit + 1;
  for (const name of known) {
    const distance = editDistance(lower, name.toLowerCase(), limit);
    if (distance < bestDistance) [best, bestDistance] = [name, distance];
  }
  return best;
}

/**
 * Insertions, deletions, substitutions and swaps of neighbours (`mokc`: one), as few as turn `a`
 * into `b`; `limit + 1` once more than `limit`. Bounded: it runs at every start, for every
 * environment variable against every setting, and the full table cost a gateway's start 60 ms.
 */
function editDistance(a: string, b: string, limit: number): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  // Three rows of the table: the one before last (for swaps), the last, and this one.
  let twoBack = new Uint16Array(b.length + 1);
  let last = Uint16Array.from({ length: b.length + 1 }, (_, j) => j);
  let row = new Uint16Array(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    row[0] = i;
    let smallest = i;
    for (let j = 1; j <= b.length; j++) {
      let cost = Math.min((last[j] as number) + 1, (row[j - 1] as number) + 1, (last[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) cost = Math.min(cost, (twoBack[j - 2] as number) + 1);
      row[j] = cost;
      if (cost < smallest) smallest = cost;
    }
    // No cell of a later row is smaller than the smallest of this one and the last (a swap reaches two rows back).
    if (smallest > limit && Math.min(...last) > limit) return limit + 1;
    [twoBack, last, row] = [last, row, twoBack];
  }
  return Math.min(last[b.length] as number, limit + 1);
}

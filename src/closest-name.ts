/**
 * The known name a typo most likely meant (`mokc` → `mock`, `OpenAI` → `openai`), or null when
 * none is close: a suggestion in a configuration error.
 */
export function closestName(typed: string, known: readonly string[]): string | null {
  const lower = typed.toLowerCase();
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const name of known) {
    const distance = editDistance(lower, name.toLowerCase());
    if (distance < bestDistance) [best, bestDistance] = [name, distance];
  }
  // At most two edits, and fewer than half the name: "x" is not a typo of "mock".
  return bestDistance <= Math.min(2, Math.floor(lower.length / 2)) ? best : null;
}

/** Insertions, deletions, substitutions and swaps of neighbours (`mokc`: one), as few as turn `a` into `b`. */
function editDistance(a: string, b: string): number {
  const rows: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  const at = (i: number, j: number): number => rows[i]?.[j] ?? Infinity;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      let cost = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) cost = Math.min(cost, at(i - 2, j - 2) + 1);
      (rows[i] as number[])[j] = cost;
    }
  }
  return at(a.length, b.length);
}

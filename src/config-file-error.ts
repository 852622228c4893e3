/**
 * A configuration file (keys.json, the price overrides) that cannot be used: every problem found,
 * each naming what it concerns (never a secret), so an operator fixes the file in one pass.
 */
export class ConfigFileError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
    /** Problems found beyond those listed (a generated file with the same mistake in every entry). */
    readonly unlisted = 0,
  ) {
    super(
      problems.length === 1 && unlisted === 0
        ? `${file}: ${problems[0]}`
        : `${file}: ${problems.length + unlisted} problems${unlisted > 0 ? ` (the first ${problems.length} listed)` : ''}:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`,
    );
    this.name = 'ConfigFileError';
  }
}

/** The line of a byte offset of a file. */
function lineOf(raw: Buffer, offset: number): number {
  let line = 1;
  for (let i = raw.indexOf(0x0a); i !== -1 && i < offset; i = raw.indexOf(0x0a, i + 1)) line++;
  return line;
}

/** Where a key written twice is: `(lines 3 and 9)`, or `(both on line 3)`. */
export function linesOf(raw: Buffer, twice: { readonly first: number; readonly second: number }): string {
  const [first, second] = [lineOf(raw, twice.first), lineOf(raw, twice.second)];
  return first === second ? `(both on line ${first})` : `(lines ${first} and ${second})`;
}

/** A field's place as the file writes it: `targets[0].api_key`. */
export function fieldPath(path: readonly (string | number)[]): string {
  return path.map((part, index) => (typeof part === 'number' ? `[${part}]` : index === 0 ? part : `.${part}`)).join('');
}

/** Several files' problems at once (keys.json and PRICES_FILE): each file's own message, one after the other. */
class ConfigFilesError extends ConfigFileError {
  constructor(readonly errors: readonly ConfigFileError[]) {
    super(
      errors.map((error) => error.file).join(' and '),
      errors.flatMap((error) => error.problems.map((problem) => `${error.file}: ${problem}`)),
    );
    this.message = errors.map((error) => error.message).join('\n');
    this.name = 'ConfigFilesError';
  }
}

/** The error of every file that failed: itself when one did. */
export function allProblems(errors: readonly ConfigFileError[]): ConfigFileError {
  return errors.length === 1 ? (errors[0] as ConfigFileError) : new ConfigFilesError(errors);
}

/**
 * A value from a configuration file, quoted for a problem's message; a value that may be a real
 * key pasted into the wrong field (a provider's `sk-` prefix, or a long random-looking string) is
 * described instead: messages go to stderr, which keys never do.
 */
export function quoted(value: string): string {
  return maybeSecret(value) ? `a value of ${value.length} characters that may be a key (not shown)` : JSON.stringify(value);
}

/**
 * Whether a value looks like a provider key: a provider's `sk-` prefix, a long random-looking
 * string, or 32 hex digits or more (Azure OpenAI's keys, Together's).
 */
export function maybeSecret(value: string): boolean {
  const random = /[A-Za-z0-9_-]{32,}/.test(value) && /[A-Z]/.test(value) && /[a-z]/.test(value) && /\d/.test(value);
  return /^\s*(?:sk|rk|pk)[-_]/i.test(value) || random || /[0-9a-f]{32,}/i.test(value);
}

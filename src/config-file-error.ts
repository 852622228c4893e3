/**
 * A configuration file (keys.json, the price overrides) that cannot be used: every problem found,
 * each naming what it concerns (never a secret), so an operator fixes the file in one pass.
 */
export class ConfigFileError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(
      problems.length === 1
        ? `${file}: ${problems[0]}`
        : `${file}: ${problems.length} problems:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`,
    );
    this.name = 'ConfigFileError';
  }
}

/**
 * Operational messages: one line each on stderr, prefixed, so that stdout carries nothing but the
 * interactions log.
 */
export function warn(message: string): void {
  process.stderr.write(`llm-gateway: ${message}\n`);
}

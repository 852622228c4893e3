/**
 * Whether a provider key was copied from an example rather than a provider's console. Used to warn
 * at start (its requests will fail), and to tell a demo file from one that guards real keys.
 */

/** Values copied from an example: `sk-...`, `sk-your-openai-key`, `<key>`, `${KEY}`. */
const PLACEHOLDER = /\.\.\.|…|^<.*>$|^\$\{?[A-Za-z_]+\}?$|your[-_ ]?([a-z]+[-_ ])?(api[-_ ]?)?key|change[-_ ]?me|placeholder|replace[-_ ]?(me|this)|^(sk-([a-z0-9]+-)*)?x{6,}$/i;

export function isPlaceholder(apiKey: string): boolean {
  return PLACEHOLDER.test(apiKey);
}

/**
 * Virtual keys printed in the README and keys.example.json. Anyone who has read them can present
 * them, and the gateway listens on every interface by default: such a key must not guard a real
 * provider key. With placeholders (the demo), the mock alone, or a self-hosted server's dummy key
 * (`"none"`, as the README's vLLM examples have) it spends nothing, and is let be.
 */
import { isPlaceholder } from './placeholder.js';
import type { Target } from './target.js';

/** Every virtual key of keys.example.json and of the README's keys.json examples (a test keeps the list whole). */
const PUBLISHED_KEYS: ReadonlySet<string> = new Set([
  'vk_demo',
  'vk_user1_openai',
  'vk_user2_anthropic',
  'vk_user3_deepseek',
  'vk_team_web',
  'vk_team_claude',
  'vk_claude_on_deepseek',
  'vk_claude_on_gpt',
  'vk_team_codex',
  'vk_codex_on_deepseek',
  'vk_codex_on_claude',
  'vk_codex_on_vllm',
  'vk_app',
  'vk_local',
  'vk_claude',
]);

/** What self-hosted servers (vLLM, Ollama, llama.cpp) are given for a key they do not check: no provider's key. */
export const NO_KEY = /^(none|empty|dummy|ollama|no[-_ ]?key|not[-_ ]?needed|sk-no-key-required)$/i;

/** The first target that holds a real-looking provider key (not the mock, a placeholder or a self-hosted server's dummy). */
function guardedTarget(targets: readonly Target[]): Target | undefined {
  return targets.find((target) => target.provider.local === undefined && target.keys.apiKeys.some((key) => !isPlaceholder(key) && !NO_KEY.test(key)));
}

/** Whether a virtual key's targets hold a real-looking provider key: what guessing the virtual key would spend. */
export function guardsRealKey(targets: readonly Target[]): boolean {
  return guardedTarget(targets) !== undefined;
}

/**
 * A published key that guards a server taking no key (a self-hosted vLLM, Ollama: a dummy key) is
 * let be, but said: anyone who has read the README can use that server through the gateway. So is
 * one with the mock behind it in a file that guards real keys (`vk_demo` kept when
 * keys.example.json became a production file): it spends nothing, but answers anyone.
 * Null: not published, or nothing but the mock and placeholders behind it in a demo's file.
 */
export function publishedKeyWarning(id: string, targets: readonly Target[], fileGuardsRealKeys: boolean): string | null {
  if (!PUBLISHED_KEYS.has(id) || guardedTarget(targets) !== undefined) return null;
  const open = targets.find((target) => target.provider.local === undefined && target.keys.apiKeys.some((key) => NO_KEY.test(key)));
  if (open !== undefined) {
    return `"${id}" is an example virtual key, published in the README, and it reaches a server that takes no key (its target's provider: ${open.provider.name}): anyone who has read the README and can reach this gateway can use that server through it; replace it with a long random virtual key of your own (echo vk_$(openssl rand -hex 16))`;
  }
  if (!fileGuardsRealKeys || !targets.some((target) => target.provider.local !== undefined)) return null;
  return `"${id}" is an example virtual key, published in the README, answered by the built-in mock: it spends nothing, but anyone who has read the README and can reach this gateway can send requests with it, and each is logged; remove it from a keys file that guards real provider keys`;
}

/** Why the key cannot be used, or null: a published key whose targets hold a real-looking provider key. */
export function publishedKeyProblem(id: string, targets: readonly Target[]): string | null {
  if (!PUBLISHED_KEYS.has(id)) return null;
  const guarded = guardedTarget(targets);
  if (guarded === undefined) return null;
  // The key is printed in full: it is public already, and the operator must find it.
  return (
    `"${id}" is an example virtual key, published in the README, and it guards a real ${guarded.provider.name} key: anyone who has read the README can spend on it. ` +
    'Replace it with a long random virtual key of your own (make one with: echo vk_$(openssl rand -hex 16)) and give that to your clients'
  );
}

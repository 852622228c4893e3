/**
 * Which of a virtual key's targets a request tries, in what order: the `fallback` strategy takes
 * them as listed; `weighted` picks the first by weight, the others follow as listed. A request
 * that uses one target only (models, counting tokens, stored responses) takes the first that
 * speaks its API.
 */
import type { ApiName } from '../formats/api.js';
import type { VirtualKey } from './keys.js';
import type { Target } from './target.js';

export function targetOrder(key: VirtualKey, random: () => number = Math.random): readonly Target[] {
  const targets = key.targets;
  if (targets.length === 1 || key.strategy === 'fallback') return targets;
  let total = 0;
  for (const target of targets) total += target.weight;
  let point = random() * total;
  let first = targets.length - 1;
  for (let i = 0; i < targets.length; i++) {
    point -= (targets[i] as Target).weight;
    if (point < 0) {
      first = i;
      break;
    }
  }
  return [targets[first] as Target, ...targets.filter((_, i) => i !== first)];
}

/** The first target that speaks `api` natively, else the first. */
export function targetFor(key: VirtualKey, api: ApiName): Target {
  return key.targets.find((target) => target.endpoints[api] !== undefined) ?? (key.targets[0] as Target);
}

#!/usr/bin/env node
// Ask every virtual key in the keys file "Which model and company are you?" to check that each
// one reaches the provider it should (zero dependencies: global fetch).
//
//   node examples/check-routing.mjs            # reads KEYS_FILE, else keys.json, else keys.example.json
//
// GATEWAY_URL defaults to http://localhost:8080. Only the virtual keys are read from the file.
import { existsSync, readFileSync } from 'node:fs';

const file = process.env.KEYS_FILE ?? (existsSync('keys.json') ? 'keys.json' : 'keys.example.json');
const gateway = process.env.GATEWAY_URL ?? 'http://localhost:8080';
const models = { openai: 'gpt-4o-mini', anthropic: 'claude-sonnet-4-5', deepseek: 'deepseek-flash', mock: 'mock-model' };

const { virtual_keys: keys } = JSON.parse(readFileSync(file, 'utf8'));
console.log(`Checking ${Object.keys(keys).length} virtual keys from ${file} against ${gateway}\n`);

/** A pattern of an allowlist (`gpt-4.1-*`) matches a name as the gateway matches it: its prefix. */
const allows = (patterns, name) => patterns.some((pattern) => (pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : name === pattern));

/** The first model the gateway lists for the key (its allowlist applied: null when none), or why it could not tell. */
async function listedModel(key) {
  try {
    const response = await fetch(`${gateway}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
    const body = await response.json().catch(() => null);
    if (!response.ok) return { failure: `GET /v1/models: HTTP ${response.status} ${body?.error?.code ?? ''} ${body?.error?.message ?? ''}` };
    return { model: typeof body?.data?.[0]?.id === 'string' ? body.data[0].id : null };
  } catch (err) {
    return { failure: `${err.message} (is the gateway running at ${gateway}?)` };
  }
}

let failures = 0;
for (const [key, entry] of Object.entries(keys)) {
  // A key with several targets is asked as its first target's provider; a model from its own
  // allowlist when it has one: a name, else the provider's usual model if a pattern allows it,
  // else one the gateway lists for the key (a pattern is no model name).
  const provider = (entry.targets?.[0] ?? entry).provider;
  const allowed = entry.models ?? [];
  const usual = models[provider] ?? 'default';
  const listed = allowed.length === 0 || allows(allowed, usual) ? { model: usual } : { model: allowed.find((name) => !name.includes('*')) ?? null };
  const { model, failure } = listed.model === null ? await listedModel(key) : listed;
  if (failure !== undefined) {
    failures++;
    console.log(`✘ ${key} (${provider}): ${failure}`);
    continue;
  }
  if (model === null) {
    console.log(`- ${key} (${provider}): skipped: its models are patterns (${allowed.join(', ')}) and the gateway lists none of them for it`);
    continue;
  }
  const started = performance.now();
  try {
    const response = await fetch(`${gateway}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, max_tokens: 60, messages: [{ role: 'user', content: 'Which model and company are you? One sentence.' }] }),
    });
    const body = await response.json();
    const ms = Math.round(performance.now() - started);
    if (response.ok) {
      const answered = response.headers.get('x-gateway-provider') ?? provider;
      console.log(`✔ ${key} (${answered}, ${body.model}, ${ms} ms): ${body.choices[0].message.content}`);
    } else {
      failures++;
      console.log(`✘ ${key} (${provider}, ${ms} ms): HTTP ${response.status} ${body.error?.code ?? ''} ${body.error?.message ?? ''}`);
    }
  } catch (err) {
    failures++;
    console.log(`✘ ${key} (${provider}): ${err.message} (is the gateway running at ${gateway}?)`);
  }
}
process.exit(failures === 0 ? 0 : 1);

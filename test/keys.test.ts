import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { KeyStore } from '../src/policy/key-store.js';
import { bearerText } from '../src/policy/auth.js';
import { ConfigFileError } from '../src/config-file-error.js';
import { keyWarnings, loadKeyFileText, parseKeyFile } from '../src/policy/keys.js';
import { registry as providers } from '../src/providers/index.js';
import { KeyFile } from '../src/policy/key-file.js';

const loadKeyFile = async (file: string, registry: typeof providers) => (await loadKeyFileText(file, registry)).keys;
import { ROOT, tempDir } from './support/gateway.js';

/** The keys a valid file holding these virtual keys gives. */
function keysOf(virtualKeys: Record<string, unknown>): ReturnType<typeof parseKeyFile> {
  return parseKeyFile(JSON.stringify({ virtual_keys: virtualKeys }), 'keys.json', providers);
}

function problems(text: string): string[] {
  try {
    parseKeyFile(text, 'keys.json', providers);
  } catch (err) {
    assert.ok(err instanceof ConfigFileError);
    assert.equal(err.file, 'keys.json');
    return err.problems;
  }
  assert.fail('expected a ConfigFileError');
}

describe('parseKeyFile', () => {
  it('accepts the shipped example file', async () => {
    const keys = await loadKeyFile(join(ROOT, 'keys.example.json'), providers);
    assert.deepEqual(keys.map((key) => [key.id, key.targets[0]?.provider.name]), [
      ['vk_demo', 'mock'],
      ['vk_user1_openai', 'openai'],
      ['vk_user2_anthropic', 'anthropic'],
      ['vk_user3_deepseek', 'deepseek'],
    ]);
  });

  it('resolves base URLs the way the official SDKs do', () => {
    const keys = parseKeyFile(
      JSON.stringify({
        virtual_keys: {
          a: { provider: 'openai', api_key: 'k' },
          b: { provider: 'deepseek', api_key: 'k' },
          c: { provider: 'anthropic', api_key: 'k' },
          d: { provider: 'openai', api_key: 'k', base_url: 'http://127.0.0.1:9999/v1/' },
          e: { provider: 'openai', api_key: 'k', base_url: 'https://x.openai.azure.com/openai/v1?api-version=preview' },
          f: { provider: 'mock' },
        },
      }),
      'keys.json',
      providers,
    );
    // Each provider's one API: chat, or messages for anthropic.
    const endpointOf = (id: string) => Object.values(keys.find((key) => key.id === id)?.targets[0]?.endpoints ?? {})[0];
    const urls = Object.fromEntries(keys.map((key) => [key.id, endpointOf(key.id)?.url ?? null]));
    assert.deepEqual(urls, {
      a: 'https://api.openai.com/v1/chat/completions',
      b: 'https://api.deepseek.com/chat/completions',
      c: 'https://api.anthropic.com/v1/messages',
      d: 'http://127.0.0.1:9999/v1/chat/completions',
      // Logged URLs leave the query string out (some providers take keys there); requests keep it.
      e: 'https://x.openai.azure.com/openai/v1/chat/completions',
      f: 'mock://local/chat/completions',
    });
    assert.equal(endpointOf('e')?.path, '/openai/v1/chat/completions?api-version=preview');
    const d = endpointOf('d');
    assert.ok(d?.kind === 'http');
    assert.deepEqual([d.https, d.hostname, d.port, d.path], [false, '127.0.0.1', 9999, '/v1/chat/completions']);
    assert.equal(endpointOf('f')?.kind, 'local', 'the mock answers in-process');
    assert.equal(keys.find((key) => key.id === 'c')?.targets[0]?.modelsEndpoint.url, 'https://api.anthropic.com/v1/models');
  });

  it('reports bad JSON with the parser message', () => {
    const [problem] = problems('{"virtual_keys": {');
    assert.match(problem ?? '', /not valid JSON/);
  });

  it('reports a missing virtual_keys object', () => {
    assert.match(problems('{}').join('\n'), /"virtual_keys" must be an object/);
    assert.match(problems('[]').join('\n'), /must hold a JSON object/);
    assert.match(problems('{"virtual_keys": []}').join('\n'), /"virtual_keys" must be an object/);
  });

  it('reports every problem, each naming its key by name or by place and masked prefix, never in full', () => {
    const entries: Record<string, unknown> = {
      vk_typo_0000000000: { provider: 'opena1', api_key: 'k' },
      vk_empty_000000000: { provider: 'openai', api_key: '' },
      vk_missing_0000000: { provider: 'deepseek' },
      vk_url_00000000000: { provider: 'openai', api_key: 'k', base_url: 'ftp://example.com' },
      vk_url2_0000000000: { name: 'team-url', provider: 'openai', api_key: 'k', base_url: 'not a url' },
      vk_field_000000000: { provider: 'openai', api_kye: 'k', api_key: 'k' },
      vk_noprovider_0000: { api_key: 'k' },
      vk_space_000000000: { provider: 'openai', api_key: ' sk-x ' },
      vk_newline_0000000: { provider: 'openai', api_key: 'sk-x\r\nx-injected: 1' },
      'vk with space 0000': { provider: 'mock' },
      vk_notobject_00000: 'openai',
      vk_badname_0000000: { name: '', provider: 'mock' },
      vk_keyname_0000000: { name: 'vk_typo_0000000000', provider: 'mock' },
      'vk_ключ_000000000': { provider: 'mock' },
    };
    const found = problems(JSON.stringify({ virtual_key: {}, virtual_keys: entries }));
    const expectations: RegExp[] = [
      /unknown top-level field "virtual_key"/,
      /virtual key #1 \(vk_typ…\): unknown provider "opena1" \(did you mean "openai"\? supported: openai, anthropic, deepseek, mock\)/,
      /virtual key #2 \(vk_emp…\): "api_key" is empty/,
      /virtual key #3 \(vk_mis…\): "api_key" is missing; put the real deepseek API key here/,
      /virtual key #4 \(vk_url…\): "base_url" must be an http:\/\/ or https:\/\/ URL/,
      /virtual key "team-url": "base_url" is not a URL/,
      /virtual key #6 \(vk_fie…\): unknown field "api_kye" \(did you mean "api_key"\? known: name, provider, /,
      /virtual key #7 \(vk_nop…\): "provider" is required \(supported: /,
      /virtual key #8 \(vk_spa…\): "api_key" has leading or trailing whitespace/,
      /virtual key #9 \(vk_new…\): "api_key" holds a control or non-ASCII character/,
      /virtual key #10 \(vk wit…\): a virtual key must be non-empty, without spaces/,
      /virtual key #11 \(vk_not…\): must be an object/,
      /virtual key #12 \(vk_bad…\): "name" must be a non-empty string/,
      /virtual key #13 \(vk_key…\): "name" must not be a virtual key/,
      /virtual key #14 \(vk_кл…\): the virtual key holds a non-ASCII character, which cannot travel in an HTTP header/,
    ];
    for (const expected of expectations) assert.ok(found.some((problem) => expected.test(problem)), `missing ${expected} in:\n${found.join('\n')}`);
    assert.equal(found.length, expectations.length, found.join('\n'));
    for (const id of Object.keys(entries)) assert.ok(!found.join('\n').includes(id), `${id} printed in full`);
  });

  it('"api" says which API a base_url speaks: a provider\'s second endpoint (DeepSeek\'s Anthropic one) or an OpenAI-compatible server speaking Messages', () => {
    const keys = parseKeyFile(
      JSON.stringify({
        virtual_keys: {
          ds: { provider: 'deepseek', api_key: 'k', base_url: 'https://api.deepseek.com/anthropic', api: 'messages' },
          compat: { provider: 'openai', api_key: 'k', base_url: 'http://127.0.0.1:8000', api: 'messages' },
          own: { provider: 'anthropic', api_key: 'k', api: 'messages' },
        },
      }),
      'keys.json',
      providers,
    );
    const target = (id: string) => keys.find((key) => key.id === id)?.targets[0];
    assert.deepEqual(target('ds')?.apis, ['messages']);
    assert.equal(target('ds')?.endpoints.messages?.url, 'https://api.deepseek.com/anthropic/v1/messages');
    assert.equal(target('ds')?.endpoints.chat, undefined);
    assert.equal(target('ds')?.modelsEndpoint.url, 'https://api.deepseek.com/anthropic/v1/models');
    assert.equal(target('compat')?.endpoints.messages?.url, 'http://127.0.0.1:8000/v1/messages');
    assert.deepEqual(target('own')?.apis, ['messages']);
  });

  it('refuses an unknown "api", a foreign API without a base_url, and a mock that would speak another API', () => {
    const found = problems(
      JSON.stringify({
        virtual_keys: {
          vk_a: { provider: 'openai', api_key: 'k', base_url: 'http://x', api: 'responses!' },
          vk_b: { provider: 'deepseek', api_key: 'k', api: 'messages' },
          vk_c: { provider: 'mock', api: 'messages' },
        },
      }),
    );
    assert.equal(found.length, 3, found.join('\n'));
    assert.match(found[0] ?? '', /#1 .*"api" must be one of "chat", "messages", "responses"/);
    assert.match(found[1] ?? '', /#2 .*"api": "messages" says its base_url speaks that API, which is not deepseek's own: give "base_url"/);
    assert.match(found[2] ?? '', /#3 .*the mock provider answers in-process and speaks only chat/);
  });

  it('OpenAI speaks chat and Responses at its own base URL; another base URL speaks chat unless "api" lists more', () => {
    const keys = parseKeyFile(
      JSON.stringify({
        virtual_keys: {
          official: { provider: 'openai', api_key: 'k' },
          compat: { provider: 'openai', api_key: 'k', base_url: 'http://127.0.0.1:8000/v1' },
          declared: { provider: 'openai', api_key: 'k', base_url: 'http://127.0.0.1:8000/v1', api: ['chat', 'responses'] },
          ds: { provider: 'deepseek', api_key: 'k' },
        },
      }),
      'keys.json',
      providers,
    );
    const target = (id: string) => keys.find((key) => key.id === id)?.targets[0];
    assert.deepEqual(target('official')?.apis, ['chat', 'responses']);
    assert.equal(target('official')?.endpoints.responses?.url, 'https://api.openai.com/v1/responses');
    assert.deepEqual(target('compat')?.apis, ['chat']);
    assert.deepEqual(target('declared')?.apis, ['chat', 'responses']);
    assert.equal(target('declared')?.endpoints.responses?.url, 'http://127.0.0.1:8000/v1/responses');
    assert.deepEqual(target('ds')?.apis, ['chat']);
  });

  it('refuses an "api" list that repeats, is empty, or leaves no API the gateway can translate into', () => {
    const found = problems(
      JSON.stringify({
        virtual_keys: {
          vk_a: { provider: 'openai', api_key: 'k', base_url: 'http://x', api: ['chat', 'chat'] },
          vk_b: { provider: 'openai', api_key: 'k', base_url: 'http://x', api: [] },
          vk_c: { provider: 'openai', api_key: 'k', base_url: 'http://x', api: 'responses' },
          vk_d: { provider: 'mock', api: ['chat', 'responses'] },
        },
      }),
    );
    assert.equal(found.length, 4, found.join('\n'));
    assert.match(found[0] ?? '', /#1 .*"api" must be one of "chat", "messages", "responses", or a list of them without repeats/);
    assert.match(found[1] ?? '', /#2 .*"api" must be one of/);
    assert.match(found[2] ?? '', /#3 .*"api" must include "chat" or "messages"/);
    assert.match(found[3] ?? '', /#4 .*the mock provider answers in-process and speaks only chat/);
  });

  it('model_map: an exact name wins over patterns, the longest prefix over shorter ones, "*" matches the rest', () => {
    const [key] = parseKeyFile(
      JSON.stringify({ virtual_keys: { vk: { provider: 'mock', model_map: { '*': 'fallback', 'claude-*': 'deepseek-chat', 'claude-opus-*': 'deepseek-reasoner', 'claude-opus-5-5': 'exact' } } } }),
      'keys.json',
      providers,
    );
    const map = (model: string) => key?.targets[0]?.modelMap?.map(model);
    assert.equal(map('claude-opus-5-5'), 'exact');
    assert.equal(map('claude-opus-4-6'), 'deepseek-reasoner');
    assert.equal(map('claude-haiku-4-5'), 'deepseek-chat');
    assert.equal(map('gpt-4o'), 'fallback');
    const [plain] = parseKeyFile(JSON.stringify({ virtual_keys: { vk: { provider: 'mock', model_map: { 'claude-*': 'x' } } } }), 'keys.json', providers);
    assert.equal(plain?.targets[0]?.modelMap?.map('gpt-4o'), 'gpt-4o', 'no match: the name passes unchanged');
  });

  it('refuses a model_map or max_output_tokens it cannot use, naming each problem', () => {
    const found = problems(
      JSON.stringify({
        virtual_keys: {
          vk_a: { provider: 'mock', model_map: [] },
          vk_b: { provider: 'mock', model_map: { 'cl*aude': 'x', 'ok*': '' } },
          vk_c: { provider: 'mock', max_output_tokens: 0 },
          vk_d: { provider: 'mock', max_output_tokens: '8192' },
        },
      }),
    );
    assert.equal(found.length, 5, found.join('\n'));
    assert.match(found[0] ?? '', /#1 .*"model_map" must be an object/);
    assert.match(found[1] ?? '', /#2 .*"model_map" key "cl\*aude" must be a model name or a "prefix\*" pattern/);
    assert.match(found[2] ?? "", /#2 .*"model_map" "ok\*" must map to a non-empty model name/);
    assert.match(found[3] ?? '', /#3 .*"max_output_tokens" must be a positive integer/);
    assert.match(found[4] ?? '', /#4 .*"max_output_tokens" must be a positive integer/);
  });

  it('labels a key by its name, else by a digest prefix that is not the key', () => {
    const [named, unnamed] = parseKeyFile('{"virtual_keys":{"vk_named_key":{"name":"team-web","provider":"mock"},"vk_unnamed_key":{"provider":"mock"}}}', 'keys.json', providers);
    assert.equal(named?.label, 'team-web');
    assert.match(unnamed?.label ?? '', /^sha256:[0-9a-f]{12}$/);
    assert.ok(!(unnamed?.label ?? '').includes('vk_unnamed_key'));
  });

  it('warns about a short virtual key that guards a real provider key, naming it without printing it; not one guarding the mock or a placeholder', () => {
    const real = 'sk-proj-AbCdEf0123456789AbCdEf0123456789';
    const keys = parseKeyFile(
      JSON.stringify({
        virtual_keys: {
          vk_alice: { provider: 'openai', api_key: real },
          vk_0123456789abcdefghij: { provider: 'openai', api_key: real },
          vk_bob: { provider: 'mock' },
          vk_carol: { provider: 'openai', api_key: 'sk-...' },
          vk_vllm: { provider: 'openai', api_key: 'none', base_url: 'http://127.0.0.1:8000/v1' },
        },
      }),
      'keys.json',
      providers,
    );
    assert.deepEqual(keyWarnings(keys).filter((warning) => /characters long/.test(warning)), [
      'virtual key #1 (vk…) is 8 characters long and guards a real provider key: a short virtual key can be guessed; use a long random one (echo vk_$(openssl rand -hex 16))',
    ]);
  });

  it('warns about placeholder keys and an anthropic base_url ending in /v1, naming the key without printing it', () => {
    const keys = parseKeyFile(
      JSON.stringify({
        virtual_keys: {
          vk_example_openai: { provider: 'openai', api_key: 'sk-...' },
          vk_example_anthropic: { name: 'claude-team', provider: 'anthropic', api_key: 'sk-ant-your-anthropic-key' },
          vk_pool_of_keys: { provider: 'openai', api_keys: ['sk-proj-RealLookingKey0123456789', '<OPENAI_API_KEY>'] },
          vk_real_openai: { provider: 'openai', api_key: 'sk-proj-AbCdEf0123456789AbCdEf0123456789' },
          vk_xes: { provider: 'openai', api_key: 'sk-proj-XXXXXXXXXXXX' },
          vk_doubled_v1: { provider: 'anthropic', api_key: 'sk-ant-api03-AbCdEf0123456789', base_url: 'https://api.anthropic.com/v1' },
          vk_two_placeholders: { provider: 'openai', api_keys: ['sk-...', 'sk-proj-RealLookingKey0123456789', '<OPENAI_API_KEY>'] },
        },
      }),
      'keys.json',
      providers,
    );
    const warnings = keyWarnings(keys).filter((warning) => !/characters long/.test(warning)); // short keys' own warning: tested apart
    assert.deepEqual(warnings, [
      'virtual key #1 (vk_ex…): "api_key" looks like a placeholder, not a real openai key; its requests will fail until the keys file holds a real one',
      'virtual key "claude-team": "api_key" looks like a placeholder, not a real anthropic key; its requests will fail until the keys file holds a real one',
      'virtual key #3 (vk_po…): 1 of its "api_keys" looks like a placeholder, not a real openai key; its requests will fail until the keys file holds a real one',
      'virtual key #5 (vk…): "api_key" looks like a placeholder, not a real openai key; its requests will fail until the keys file holds a real one',
      'virtual key #6 (vk_d…): requests go to https://api.anthropic.com/v1/v1/messages: "base_url" already ends in /v1, and the gateway appends /v1/messages; drop the /v1',
      'virtual key #7 (vk_two…): 2 of its "api_keys" look like a placeholder, not a real openai key; its requests will fail until the keys file holds a real one',
    ]);
  });

  it("warns of a real key too short to be taken out of what the provider sends back, not of a self-hosted server's dummy", () => {
    const keys = keysOf({
      vk_short_key_0123456: { provider: 'openai', api_key: 'Tq7pW2x', base_url: 'http://vllm:8000/v1' },
      vk_short_pool_012345: { provider: 'openai', api_keys: ['sk-proj-RealLookingKey0123456789', 'Tq7pW2x', 'k9'] },
      vk_dummy_key_0123456: { provider: 'openai', api_key: 'ollama', base_url: 'http://localhost:11434/v1' },
      vk_the_mock_01234567: { provider: 'mock' },
    });
    assert.deepEqual(keyWarnings(keys).filter((warning) => /shorter than/.test(warning)), [
      'virtual key #1 (vk_sho…): "api_key" is shorter than 8 characters: a key this short is not taken out of what the provider sends back (it would mangle ordinary text); use a longer one',
      'virtual key #2 (vk_sho…): 2 of its "api_keys" are shorter than 8 characters: a key this short is not taken out of what the provider sends back (it would mangle ordinary text); use a longer one',
    ]);
  });

  it('warns about a base_url that already ends in the path the gateway appends, or that leaves out OpenAI\'s /v1, not about other servers\' paths', () => {
    const real = 'sk-proj-AbCdEf0123456789AbCdEf0123456789';
    const keys = keysOf({
      vk_chat_twice: { provider: 'openai', api_key: real, base_url: 'https://api.openai.com/v1/chat/completions' },
      vk_no_v1: { provider: 'openai', api_key: real, base_url: 'https://api.openai.com/' },
      vk_ds_chat: { provider: 'deepseek', api_key: real, base_url: 'https://api.deepseek.com/chat/completions' },
      vk_messages_twice: { provider: 'anthropic', api_key: real, base_url: 'https://api.anthropic.com/v1/messages' },
      vk_both: { provider: 'openai', api_key: real, base_url: 'http://vllm:8000/v1/chat/completions', api: ['chat', 'responses'] },
      // Fine: official hosts as documented, and other OpenAI-compatible paths.
      vk_official: { provider: 'openai', api_key: real, base_url: 'https://api.openai.com/v1' },
      vk_ds_plain: { provider: 'deepseek', api_key: real, base_url: 'https://api.deepseek.com' },
      vk_ds_v1: { provider: 'deepseek', api_key: real, base_url: 'https://api.deepseek.com/v1' },
      vk_openrouter: { provider: 'openai', api_key: real, base_url: 'https://openrouter.ai/api/v1' },
      vk_azure: { provider: 'openai', api_key: real, base_url: 'https://x.openai.azure.com/openai/v1?api-version=preview' },
      vk_ollama: { provider: 'openai', api_key: real, base_url: 'http://localhost:11434' },
    });
    assert.deepEqual(keyWarnings(keys).filter((warning) => !/characters long/.test(warning)), [
      'virtual key #1 (vk_c…): requests go to https://api.openai.com/v1/chat/completions/chat/completions: "base_url" already ends in /chat/completions, and the gateway appends /chat/completions; drop the /chat/completions',
      'virtual key #2 (vk…): requests go to https://api.openai.com/chat/completions: OpenAI\'s API is under /v1; make "base_url" https://api.openai.com/v1',
      'virtual key #3 (vk_…): requests go to https://api.deepseek.com/chat/completions/chat/completions: "base_url" already ends in /chat/completions, and the gateway appends /chat/completions; drop the /chat/completions',
      'virtual key #4 (vk_me…): requests go to https://api.anthropic.com/v1/messages/v1/messages: "base_url" already ends in /v1/messages, and the gateway appends /v1/messages; drop the /v1/messages',
      'virtual key #5 (vk…): requests go to http://vllm:8000/v1/chat/completions/chat/completions: "base_url" already ends in /chat/completions, and the gateway appends /chat/completions; drop the /chat/completions',
    ]);
  });

  it('refuses a provider\'s own host over plain http, and warns of any other public host over it (not of local or private ones)', () => {
    const real = 'sk-proj-AbCdEf0123456789AbCdEf0123456789';
    assert.deepEqual(problems(JSON.stringify({ virtual_keys: { vk_plain_openai_0123: { provider: 'openai', api_key: real, base_url: 'http://api.openai.com/v1' }, vk_plain_claude_0123: { provider: 'anthropic', api_key: real, base_url: 'http://api.anthropic.com' }, vk_plain_rooted_0123: { provider: 'openai', api_key: real, base_url: 'http://api.openai.com./v1' } } })), [
      'virtual key #1 (vk_pla…): "base_url" would send the real key to api.openai.com unencrypted: use https://',
      'virtual key #2 (vk_pla…): "base_url" would send the real key to api.anthropic.com unencrypted: use https://',
      'virtual key #3 (vk_pla…): "base_url" would send the real key to api.openai.com unencrypted: use https://',
    ]);
    const keys = keysOf({
      vk_public_0123456789: { provider: 'openai', api_key: real, base_url: 'http://api.together.xyz/v1' },
      vk_public_ip_0123456: { provider: 'openai', api_key: real, base_url: 'http://203.0.113.7:8000/v1' },
      vk_local_0123456789a: { provider: 'openai', api_key: real, base_url: 'http://localhost:11434/v1' },
      vk_service_012345678: { provider: 'openai', api_key: real, base_url: 'http://vllm:8000/v1' },
      vk_private_012345678: { provider: 'openai', api_key: real, base_url: 'http://10.0.3.4:8000/v1' },
      vk_private6_01234567: { provider: 'openai', api_key: real, base_url: 'http://[fd00::4]:8000/v1' },
      vk_internal_01234567: { provider: 'openai', api_key: real, base_url: 'http://llm.corp.internal/v1' },
      vk_any_0123456789abc: { provider: 'openai', api_key: real, base_url: 'http://0.0.0.0:8000/v1' },
      vk_mapped_0123456789: { provider: 'openai', api_key: real, base_url: 'http://[::ffff:127.0.0.1]:8000/v1' },
      vk_mapped_public_012: { provider: 'openai', api_key: real, base_url: 'http://[::ffff:8.8.8.8]/v1' },
      vk_rooted_0123456789: { provider: 'openai', api_key: real, base_url: 'http://localhost.:8000/v1' },
    });
    assert.deepEqual(keyWarnings(keys).filter((warning) => /plain http/.test(warning)), [
      'virtual key #1 (vk_pub…): "base_url" is plain http:// to api.together.xyz: its key and every conversation cross the network unencrypted; use https://',
      'virtual key #2 (vk_pub…): "base_url" is plain http:// to 203.0.113.7: its key and every conversation cross the network unencrypted; use https://',
      'virtual key #10 (vk_map…): "base_url" is plain http:// to ::ffff:808:808: its key and every conversation cross the network unencrypted; use https://',
    ]);
  });

  it('never prints a value that may be a real key pasted into the wrong field; refuses a real key kept as a virtual key or a name', () => {
    const real = 'sk-proj-AbCdEf0123456789AbCdEf0123456789';
    const other = 'sk-ant-api03-QwErTy0123456789QwErTy0123456789';
    const hex = 'Zx9' + 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
    const found = problems(
      JSON.stringify({
        virtual_keys: {
          vk_swapped_012345678: { provider: 'openai', api_key: 'https://api.openai.com/v1', base_url: real },
          vk_in_provider_01234: { provider: real, api_key: real },
          vk_in_models_0123456: { provider: 'openai', api_key: real, models: [`${hex}*x`] },
          [real]: { provider: 'openai', api_key: real },
          vk_named_0123456789a: { name: other, provider: 'anthropic', api_key: other, rate_limit: { requests_per_minute: -1 } },
          // Its provider misspelt: its targets cannot be read, and its name is still not printed.
          vk_named_typo_012345: { name: other, provider: 'antropic', api_key: other },
        },
      }),
    );
    assert.ok(found.every((problem) => !problem.includes('AbCdEf0123456789') && !problem.includes('QwErTy0123456789') && !problem.includes(hex)), found.join('\n'));
    // A real key in plain sight first: in a file with more problems than are listed, never left out.
    assert.deepEqual(found, [
      'virtual key #4 (sk-pro…): the virtual key is one of this file\'s real provider keys: clients would hold it, and every log entry would show it; give the key its own (vk_$(openssl rand -hex 16))',
      'virtual key #5 (vk_nam…): "name" is one of this file\'s real provider keys: names appear in the log, metrics and /v1/usage',
      'virtual key #1 (vk_swa…): "base_url" is not a URL: a value of 40 characters that may be a key (not shown)',
      'virtual key #2 (vk_in_…): unknown provider a value of 40 characters that may be a key (not shown) (supported: openai, anthropic, deepseek, mock)',
      'virtual key #3 (vk_in_…): "models[0]" may use "*" only at the end ("gpt-4.1-*"), got a value of 37 characters that may be a key (not shown)',
      'virtual key #5 (vk_nam…): "rate_limit.requests_per_minute" must be a positive integer',
      'virtual key #6 (vk_nam…): unknown provider "antropic" (did you mean "anthropic"? supported: openai, anthropic, deepseek, mock)',
    ]);
    // Values that look like what they are still quoted.
    assert.deepEqual(problems('{"virtual_keys":{"vk_typo_0123456789":{"provider":"mokc"}}}'), ['virtual key #1 (vk_typ…): unknown provider "mokc" (did you mean "mock"? supported: openai, anthropic, deepseek, mock)']);
  });

  it("never prints a real key of the file, whatever its shape, nor 32 hex digits or more (Azure OpenAI's keys), wherever it was pasted", () => {
    const azure = '0123456789abcdef0123456789abcdef';
    const plain = 'selfhosted-server-secret';
    const found = problems(
      JSON.stringify({
        virtual_keys: {
          vk_azure_in_provider: { provider: azure, api_key: azure },
          vk_azure_in_url_0123: { provider: 'openai', api_key: 'sk-x-0123456789', base_url: azure },
          vk_plain_in_models_0: { provider: 'openai', api_key: plain, base_url: 'http://vllm:8000/v1', models: [`${plain}*x`] },
          vk_plain_field_01234: { targets: [{ provider: 'openai', api_keys: ['sk-y-0123456789', plain] }], [plain]: 1 },
        },
      }),
    );
    assert.ok(found.length >= 4, found.join('\n'));
    for (const secret of [azure, plain]) assert.ok(found.every((problem) => !problem.includes(secret)), found.join('\n'));
  });

  it('lists the first 100 problems of a file with thousands, saying how many there are, still without its real keys', () => {
    const plain = 'selfhosted-server-secret';
    const entries: Record<string, unknown> = { vk_pasted_000000000: { provider: 'openai', api_key: 'sk-z-0123456789', base_url: 'http://vllm:8000/v1', models: [`${plain}*x`] } };
    for (let i = 0; i < 3000; i++) entries[`vk_${String(i).padStart(20, '0')}`] = { provider: 'openai', api_key: i === 2999 ? plain : `sk-proj-${String(i).padStart(40, '0')}`, rate_limits: {} };
    try {
      parseKeyFile(JSON.stringify({ virtual_keys: entries }), 'keys.json', providers);
      assert.fail('expected an error');
    } catch (err) {
      assert.ok(err instanceof ConfigFileError);
      assert.equal(err.problems.length, 100);
      assert.equal(err.unlisted, 2901);
      assert.match(err.message, /^keys\.json: 3001 problems \(the first 100 listed\):\n {2}- virtual key #1 \(vk_pas…\): \"models\[0\]\" may use/);
      assert.equal(err.message.split('\n').length, 101);
      assert.match(err.message, /\[redacted\]\*x/);
      assert.ok(!err.message.includes(plain), err.message.slice(0, 500));
    }
  });

  it('keeps what a target stores (responses, threads) under its provider and base URL: a key added to rotate keeps them; another server does not share them', () => {
    const storage = (target: Record<string, unknown>): string => keysOf({ vk_store_0123456789: target })[0]?.targets[0]?.storage ?? '';
    const one = storage({ provider: 'anthropic', api_key: 'sk-ant-api03-first-0000' });
    assert.equal(storage({ provider: 'anthropic', api_keys: ['sk-ant-api03-first-0000', 'sk-ant-api03-second-1111'] }), one);
    assert.notEqual(storage({ provider: 'anthropic', api_key: 'sk-ant-api03-first-0000', base_url: 'http://10.0.0.9:8080' }), one);
    assert.notEqual(storage({ provider: 'openai', api_key: 'none', base_url: 'https://api.anthropic.com' }), one);
  });

  it('warns of a name that looks like a provider key: names appear in the log, metrics and /v1/usage', () => {
    const keys = keysOf({ vk_named_key_0123456: { name: 'sk-ant-api03-Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1', provider: 'mock' }, vk_named_plain_01234: { name: 'team-a', provider: 'mock' } });
    assert.deepEqual(keyWarnings(keys).filter((warning) => /looks like a provider key/.test(warning)), ['virtual key #1 (vk_nam…): its "name" looks like a provider key, and names appear in the log, metrics and /v1/usage: give it a plain name']);
  });

  it('an unknown provider is the key\'s one problem, with the closest known name', () => {
    assert.deepEqual(problems('{"virtual_keys":{"vk_typo_0123456789":{"provider":"mokc"},"vk_case_0123456789":{"provider":"OpenAI","api_key":""},"vk_far_01234567890":{"provider":"bedrock"}}}'), [
      'virtual key #1 (vk_typ…): unknown provider "mokc" (did you mean "mock"? supported: openai, anthropic, deepseek, mock)',
      'virtual key #2 (vk_cas…): unknown provider "OpenAI" (did you mean "openai"? supported: openai, anthropic, deepseek, mock)',
      'virtual key #3 (vk_far…): unknown provider "bedrock" (supported: openai, anthropic, deepseek, mock)',
    ]);
  });

  it('accepts a file that starts with a UTF-8 byte order mark', async () => {
    const file = join(tempDir(), 'keys.json');
    writeFileSync(file, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{\n  "virtual_keys": {"vk_1": {"provider": "mock"}}\n}')]));
    assert.deepEqual((await loadKeyFile(file, providers)).map((key) => key.id), ['vk_1']);
    assert.match(problems('\uFEFF{\n"virtual_keys": {,}}').join(), /not valid JSON \(line 2, column 18\)/);
  });

  it('says an empty file is empty, not "not valid JSON" with no place', () => {
    for (const text of ['', '\n  \n', '\uFEFF']) assert.match(problems(text).join(), /the file is empty: it must hold a JSON object/);
  });

  it('lets the mock provider go without an api_key but not the others', () => {
    assert.doesNotThrow(() => parseKeyFile('{"virtual_keys":{"vk":{"provider":"mock"}}}', 'keys.json', providers));
    assert.match(problems('{"virtual_keys":{"vk":{"provider":"anthropic"}}}').join(), /"api_key" is missing; put the real anthropic API key here/);
    assert.match(problems('{"virtual_keys":{"vk":{"provider":"anthropic","api_key":""}}}').join(), /"api_key" is empty; put the real anthropic API key here/);
  });

  it('refuses credentials inside base_url and an empty key table', () => {
    assert.match(problems('{"virtual_keys":{"vk":{"provider":"openai","api_key":"k","base_url":"https://u:p@h/v1"}}}').join(), /must not contain credentials/);
    assert.match(problems('{"virtual_keys":{}}').join(), /is empty/);
  });

  it('formats all problems in one message naming the file', () => {
    try {
      parseKeyFile('{"virtual_keys":{"a":{"provider":"x"},"b":{"provider":"y"}}}', 'my-keys.json', providers);
      assert.fail('expected an error');
    } catch (err) {
      assert.ok(err instanceof ConfigFileError);
      assert.match(err.message, /^my-keys\.json: 2 problems:\n {2}- virtual key #1 \(…\): unknown provider "x" \(supported: /);
    }
  });
});

describe('loadKeyFile', () => {
  it('explains how to create a missing file from keys.example.json', async () => {
    const file = join(tempDir(), 'keys.json');
    await assert.rejects(loadKeyFile(file, providers), (err: unknown) => {
      assert.ok(err instanceof ConfigFileError);
      assert.match(err.message, /file not found/);
      assert.match(err.message, /cp keys\.example\.json/);
      return true;
    });
  });

  it("knows what a key's requests may send a provider, to take it out of what comes back: every target's real keys, and credentials in a base URL's query (written and decoded), longest first", () => {
    const [key] = parseKeyFile(
      JSON.stringify({ virtual_keys: { vk_1: { targets: [
        { provider: 'openai', api_keys: ['sk-first-0123456789', 'sk-second-0123456789abc'] },
        { provider: 'openai', api_key: 'sk-first-0123456789', base_url: 'https://proxy.example/v1?api-version=2024-10-21&key=AIza%2Bquery0123&x_sig=s1g0123456789&tokenizer=cl100k_base&author=assistant&token=true' },
        // A dummy a self-hosted server does not check is no secret (its "none" would be taken out of every error).
        { provider: 'openai', api_key: 'none', base_url: 'http://vllm:8000/v1' },
      ] } } }),
      'keys.json',
      providers,
    );
    assert.deepEqual(key?.realKeys, ['sk-second-0123456789abc', 'sk-first-0123456789', 'AIza%2Bquery0123', 'AIza+query0123', 's1g0123456789']);
    assert.deepEqual(key?.targets[1]?.secrets, ['sk-first-0123456789', 'AIza%2Bquery0123', 'AIza+query0123', 's1g0123456789'], 'not the api-version, a tokenizer or an author (no credential), nor a value too short to be one');
    assert.deepEqual(key?.targets[2]?.secrets, []);
  });

  it('reads a valid file', async () => {
    const file = join(tempDir(), 'keys.json');
    writeFileSync(file, '{"virtual_keys":{"vk_1":{"provider":"openai","api_key":"sk-1"}}}');
    const keys = await loadKeyFile(file, providers);
    assert.deepEqual(keys[0]?.targets[0]?.keys.apiKeys, ['sk-1']);
  });
});

describe('KeyStore', () => {
  it('finds keys by their exact value only, and can be replaced at once', () => {
    const keys = parseKeyFile('{"virtual_keys":{"vk_a":{"provider":"mock"},"vk_b":{"provider":"openai","api_key":"sk"}}}', 'k', providers);
    const store = new KeyStore(keys);
    assert.equal(store.size, 2);
    assert.equal(store.lookup('vk_a')?.id, 'vk_a');
    assert.equal(store.lookup('vk_b')?.targets[0]?.provider.name, 'openai');
    for (const near of ['vk_', 'vk_a ', 'VK_A', 'vk_ab', '']) assert.equal(store.lookup(near), undefined, near);
    store.replace(keys.slice(1));
    assert.equal(store.lookup('vk_a'), undefined);
    assert.equal(store.size, 1);
  });
});

describe('key file JSON errors', () => {
  it('give the line and column, never the text around them (it may hold an api_key)', () => {
    try {
      parseKeyFile('{\n  "virtual_keys": {\n    "vk": {"provider": "openai", "api_key": "sk-SECRET"},,\n  }\n}', 'keys.json', providers);
      assert.fail('expected an error');
    } catch (err) {
      assert.ok(err instanceof ConfigFileError);
      assert.match(err.message, /not valid JSON \(line 3, column \d+\)/);
      assert.doesNotMatch(err.message, /SECRET/);
    }
  });
});

/** What `warn` writes to stderr while `run` runs. */
async function stderrOf(run: () => Promise<unknown>): Promise<string> {
  const write = process.stderr.write;
  let text = '';
  process.stderr.write = ((chunk: string | Uint8Array) => ((text += String(chunk)), true)) as typeof process.stderr.write;
  try {
    await run();
  } finally {
    process.stderr.write = write;
  }
  return text;
}

describe('the example virtual keys of the README and keys.example.json', () => {
  const published = [...`${readFileSync(join(ROOT, 'README.md'), 'utf8')}\n${readFileSync(join(ROOT, 'keys.example.json'), 'utf8')}`.matchAll(/"(vk_\w+)"\s*:/g)].map((match) => match[1] as string);
  const real = 'sk-proj-AbCdEf0123456789AbCdEf0123456789';

  it('are refused, every one, where they guard a real provider key: the start-up error names the key and how to make one', () => {
    assert.ok(new Set(published).size >= 15, `found only ${published.join(', ')}`);
    for (const id of new Set(published)) {
      const found = problems(JSON.stringify({ virtual_keys: { [id]: { targets: [{ provider: 'mock' }, { provider: 'openai', api_key: real }] } } }));
      assert.equal(found.length, 1, found.join('\n'));
      assert.match(
        found[0] ?? '',
        new RegExp(`^virtual key #1 \\([^)]*…\\): "${id}" is an example virtual key, published in the README, and it guards a real openai key: .*a long random virtual key of your own \\(make one with: echo vk_\\$\\(openssl rand -hex 16\\)\\)`),
      );
    }
  });

  it('are accepted with placeholder provider keys (the demo), with the mock alone, or with a self-hosted server\'s dummy key', async () => {
    const keys = parseKeyFile(
      JSON.stringify({
        virtual_keys: {
          vk_user1_openai: { provider: 'openai', api_key: 'sk-your-openai-key' },
          vk_team_web: { targets: [{ provider: 'openai', api_key: 'sk-...' }, { provider: 'anthropic', api_keys: ['sk-ant-...', '<ANTHROPIC_KEY>'] }] },
          vk_demo: { provider: 'mock' },
          vk_mine_0123456789abcdef: { provider: 'openai', api_key: real },
          // As the README's vLLM examples have them: a self-hosted server's dummy key.
          vk_codex_on_vllm: { provider: 'openai', api_key: 'none', base_url: 'http://vllm:8000/v1' },
          vk_local: { targets: [{ provider: 'openai', api_key: 'EMPTY', base_url: 'http://vllm-a:8000/v1' }, { provider: 'openai', api_key: 'ollama', base_url: 'http://ollama:11434/v1' }] },
        },
      }),
      'keys.json',
      providers,
    );
    assert.equal(keys.length, 6);
    // Accepted, but where one reaches a server that takes no key, or the mock in a file that guards
    // real keys (vk_demo kept from the example), said at start: anyone can use it.
    assert.deepEqual(keyWarnings(keys).filter((warning) => /example virtual key/.test(warning)), [
      'virtual key #3 (vk…): "vk_demo" is an example virtual key, published in the README, answered by the built-in mock: it spends nothing, but anyone who has read the README and can reach this gateway can send requests with it, and each is logged; remove it from a keys file that guards real provider keys',
      'virtual key #5 (vk_co…): "vk_codex_on_vllm" is an example virtual key, published in the README, and it reaches a server that takes no key (its target\'s provider: openai): anyone who has read the README and can reach this gateway can use that server through it; replace it with a long random virtual key of your own (echo vk_$(openssl rand -hex 16))',
      'virtual key #6 (vk…): "vk_local" is an example virtual key, published in the README, and it reaches a server that takes no key (its target\'s provider: openai): anyone who has read the README and can reach this gateway can use that server through it; replace it with a long random virtual key of your own (echo vk_$(openssl rand -hex 16))',
    ]);
  });

  it('are not warned about in the demo (keys.example.json as shipped: the mock and placeholders, nothing real guarded)', async () => {
    const keys = await loadKeyFile(join(ROOT, 'keys.example.json'), providers);
    assert.ok(keys.some((key) => key.id === 'vk_demo'));
    assert.deepEqual(keyWarnings(keys).filter((warning) => /example virtual key/.test(warning)), []);
    // The mock under a key of one's own, beside real keys, is no published key: nothing said.
    const own = parseKeyFile(JSON.stringify({ virtual_keys: { vk_mock_0123456789abcdef: { provider: 'mock' }, vk_mine_0123456789abcdef: { provider: 'openai', api_key: real } } }), 'keys.json', providers);
    assert.deepEqual(keyWarnings(own).filter((warning) => /example virtual key/.test(warning)), []);
  });

  it('make a reload refused, the previous keys kept', async () => {
    const file = join(tempDir(), 'keys.json');
    writeFileSync(file, JSON.stringify({ virtual_keys: { vk_user1_openai: { provider: 'openai', api_key: 'sk-your-openai-key' } } }));
    const { file: keyFile, keys } = await KeyFile.open(file, providers, null);
    assert.equal(keys.length, 1);
    writeFileSync(file, JSON.stringify({ virtual_keys: { vk_user1_openai: { provider: 'openai', api_key: real } } }));
    let outcome = '';
    const stderr = await stderrOf(async () => (outcome = (await keyFile.reload('SIGHUP', { onlyIfChanged: true })).outcome));
    assert.equal(outcome, 'failed');
    assert.match(stderr, /keys NOT reloaded \(SIGHUP\); still using the previous 1:\n.*"vk_user1_openai" is an example virtual key, published in the README/);
    assert.ok(!stderr.includes(real));
  });
});

describe('keys written twice', () => {
  it('a virtual key defined twice, or a field written twice in one (escaped or not), refuses the file, saying where, never printing the key', () => {
    const text = `{
  "virtual_keys": {
    "vk_team_secret_0123": { "provider": "openai", "api_key": "sk-a", "models": ["gpt-4o-mini"], "budget": {"max_usd": 5, "period": "month"} },
    "vk_other_secret_4567": { "name": "other", "provider": "openai",
      "api_key": "sk-b",
      "api_key": "sk-c" },
    "vk_routed_secret_89ab": { "targets": [{ "provider": "mock" }, { "provider": "openai", "api_key": "sk-d",
      "api_\\u006bey": "sk-e" }] },
    "vk_team_secret_0123": { "provider": "openai", "api_key": "sk-a" }
  }
}`;
    const found = problems(text);
    assert.deepEqual(found, [
      '"virtual_keys": the virtual key vk_tea… is defined twice (lines 3 and 9); keep one',
      'virtual key "other": "api_key" is written twice (lines 5 and 6); keep one',
      'virtual key #3 (vk_rou…): "targets[1].api_key" is written twice (lines 7 and 8); keep one',
    ]);
  });

  it('a field written twice on one line is said so', () => {
    assert.deepEqual(problems('{"virtual_keys": {"vk_other_secret_4567": {"name": "other", "provider": "openai", "api_key": "sk-b", "api_key": "sk-c"}}}'), [
      'virtual key "other": "api_key" is written twice (both on line 1); keep one',
    ]);
  });

  it('the same names in different objects are fine', () => {
    assert.equal(parseKeyFile('{"virtual_keys":{"vk_a":{"provider":"openai","api_key":"sk-1"},"vk_b":{"targets":[{"provider":"openai","api_key":"sk-2"},{"provider":"openai","api_key":"sk-3"}]}}}', 'keys.json', providers).length, 2);
  });
});

describe('the text of an Authorization: Bearer header', () => {
  it('is all that follows the scheme (in any case), spaces within kept, and read in linear time', () => {
    assert.equal(bearerText('Bearer scrape secret'), 'scrape secret');
    assert.equal(bearerText('bearer \t scrape secret \t'), 'scrape secret');
    assert.equal(bearerText('Bearer'), null);
    assert.equal(bearerText('Bearerx y'), null);
    assert.equal(bearerText('Basic eDp5'), null);
    assert.equal(bearerText(undefined), null);
    // A lazy pattern took ~2.5 s on 64 KB of spaces within (quadratic); 1 MB here would take minutes.
    const started = performance.now();
    assert.equal(bearerText(`Bearer a${' '.repeat(1_000_000)}b`)?.length, 1_000_002);
    assert.ok(performance.now() - started < 10_000, `${Math.round(performance.now() - started)} ms`);
  });
});

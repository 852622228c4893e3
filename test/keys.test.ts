import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { KeyFileError, KeyStore, loadKeyFile, parseKeyFile } from '../src/keys.js';
import { providers } from '../src/providers/index.js';
import { ROOT, tempDir } from './support/gateway.js';

function problems(text: string): string[] {
  try {
    parseKeyFile(text, 'keys.json', providers);
  } catch (err) {
    assert.ok(err instanceof KeyFileError);
    assert.equal(err.file, 'keys.json');
    return err.problems;
  }
  assert.fail('expected a KeyFileError');
}

describe('parseKeyFile', () => {
  it('accepts the shipped example file', async () => {
    const keys = await loadKeyFile(join(ROOT, 'keys.example.json'), providers);
    assert.deepEqual(keys.map((key) => [key.id, key.provider.name]), [
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
    const urls = Object.fromEntries(keys.map((key) => [key.id, key.target?.url ?? null]));
    assert.deepEqual(urls, {
      a: 'https://api.openai.com/v1/chat/completions',
      b: 'https://api.deepseek.com/chat/completions',
      c: 'https://api.anthropic.com/v1/messages',
      d: 'http://127.0.0.1:9999/v1/chat/completions',
      e: 'https://x.openai.azure.com/openai/v1/chat/completions?api-version=preview',
      f: null,
    });
    const d = keys.find((key) => key.id === 'd');
    assert.deepEqual([d?.target?.https, d?.target?.hostname, d?.target?.port, d?.target?.path], [false, '127.0.0.1', 9999, '/v1/chat/completions']);
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

  it('reports every problem, each naming its virtual key, not just the first', () => {
    const found = problems(
      JSON.stringify({
        virtual_key: {},
        virtual_keys: {
          vk_typo: { provider: 'opena1', api_key: 'k' },
          vk_empty: { provider: 'openai', api_key: '' },
          vk_missing: { provider: 'deepseek' },
          vk_url: { provider: 'openai', api_key: 'k', base_url: 'ftp://example.com' },
          vk_url2: { provider: 'openai', api_key: 'k', base_url: 'not a url' },
          vk_field: { provider: 'openai', api_kye: 'k', api_key: 'k' },
          vk_noprovider: { api_key: 'k' },
          vk_space: { provider: 'openai', api_key: ' sk-x ' },
          vk_newline: { provider: 'openai', api_key: 'sk-x\r\nx-injected: 1' },
          'vk with space': { provider: 'mock' },
          vk_notobject: 'openai',
        },
      }),
    );
    const expectations: RegExp[] = [
      /unknown top-level field "virtual_key"/,
      /virtual key "vk_typo": unknown provider "opena1" \(supported: openai, anthropic, deepseek, mock\)/,
      /virtual key "vk_empty": "api_key" is empty/,
      /virtual key "vk_missing": "api_key" is empty/,
      /virtual key "vk_url": "base_url" must be an http:\/\/ or https:\/\/ URL/,
      /virtual key "vk_url2": "base_url" is not a URL/,
      /virtual key "vk_field": unknown field "api_kye"/,
      /virtual key "vk_noprovider": "provider" is required \(supported: /,
      /virtual key "vk_space": "api_key" has leading or trailing whitespace/,
      /virtual key "vk_newline": "api_key" holds a control or non-ASCII character/,
      /virtual key "vk with space": a virtual key must be non-empty, without spaces/,
      /virtual key "vk_notobject": must be an object/,
    ];
    for (const expected of expectations) assert.ok(found.some((problem) => expected.test(problem)), `missing ${expected} in:\n${found.join('\n')}`);
    assert.equal(found.length, expectations.length, found.join('\n'));
  });

  it('lets the mock provider go without an api_key but not the others', () => {
    assert.doesNotThrow(() => parseKeyFile('{"virtual_keys":{"vk":{"provider":"mock"}}}', 'keys.json', providers));
    assert.match(problems('{"virtual_keys":{"vk":{"provider":"anthropic"}}}').join(), /"api_key" is empty/);
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
      assert.ok(err instanceof KeyFileError);
      assert.match(err.message, /^my-keys\.json: 4 problems:\n {2}- virtual key "a"/);
    }
  });
});

describe('loadKeyFile', () => {
  it('explains how to create a missing file from keys.example.json', async () => {
    const file = join(tempDir(), 'keys.json');
    await assert.rejects(loadKeyFile(file, providers), (err: unknown) => {
      assert.ok(err instanceof KeyFileError);
      assert.match(err.message, /file not found/);
      assert.match(err.message, /cp keys\.example\.json/);
      return true;
    });
  });

  it('reads a valid file', async () => {
    const file = join(tempDir(), 'keys.json');
    writeFileSync(file, '{"virtual_keys":{"vk_1":{"provider":"openai","api_key":"sk-1"}}}');
    const keys = await loadKeyFile(file, providers);
    assert.deepEqual(keys[0]?.apiKeys, ['sk-1']);
  });
});

describe('KeyStore', () => {
  it('finds keys by their exact value only, and can be replaced at once', () => {
    const keys = parseKeyFile('{"virtual_keys":{"vk_a":{"provider":"mock"},"vk_b":{"provider":"openai","api_key":"sk"}}}', 'k', providers);
    const store = new KeyStore(keys);
    assert.equal(store.size, 2);
    assert.equal(store.lookup('vk_a')?.id, 'vk_a');
    assert.equal(store.lookup('vk_b')?.provider.name, 'openai');
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
      assert.ok(err instanceof KeyFileError);
      assert.match(err.message, /not valid JSON \(line 3, column \d+\)/);
      assert.doesNotMatch(err.message, /SECRET/);
    }
  });
});

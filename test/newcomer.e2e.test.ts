/**
 * A newcomer's first hour: `npm start` on a fresh clone, and the README's snippets run exactly as
 * printed against `npm run demo`. The snippets use the official SDKs; here each runs against a
 * stand-in module of the same name that does what the SDK does on the wire (POST
 * {baseURL}/chat/completions with the key as a bearer token), so the test checks the snippet's own
 * values (URL, key, model) without a network.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { endWithFile } from './support/children.js';
import { ROOT, runGatewayUntilExit, startGateway, tempDir, waitFor, type GatewayProcess } from './support/gateway.js';
import { refusingPort } from './support/ports.js';

const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

/** The first fenced block of `language` after `heading`. */
function snippet(heading: string, language: string): string {
  const section = README.slice(README.indexOf(heading));
  const match = new RegExp('```' + language + '\\n([\\s\\S]*?)```').exec(section);
  assert.ok(match !== null, `no ${language} block after ${heading}`);
  return match[1] as string;
}

let demo: GatewayProcess;

before(async () => {
  // What `npm run demo` starts: the shipped example keys.
  demo = await startGateway({ keys: readFileSync(join(ROOT, 'keys.example.json'), 'utf8'), env: { LOG_CONSOLE: 'off' } });
});

after(async () => {
  await demo?.stop();
});

describe("the README's snippets, as printed, against the demo", () => {
  it('the Node snippet (OpenAI SDK) gets the mock\'s answer', () => {
    const code = snippet('## Using it', 'js');
    assert.match(code, /apiKey: 'vk_demo'/);
    const dir = tempDir();
    mkdirSync(join(dir, 'node_modules', 'openai'), { recursive: true });
    writeFileSync(join(dir, 'node_modules', 'openai', 'package.json'), JSON.stringify({ name: 'openai', type: 'module', main: 'index.js' }));
    writeFileSync(
      join(dir, 'node_modules', 'openai', 'index.js'),
      `export default class OpenAI {
        constructor({ baseURL, apiKey }) {
          this.chat = { completions: { create: async (body) => {
            const res = await fetch(baseURL + '/chat/completions', { method: 'POST', headers: { authorization: 'Bearer ' + apiKey, 'content-type': 'application/json' }, body: JSON.stringify(body) });
            if (!res.ok) throw new Error(res.status + ' ' + await res.text());
            return res.json();
          } } };
        }
      }`,
    );
    writeFileSync(join(dir, 'snippet.mjs'), code.replaceAll('localhost:8080', `127.0.0.1:${demo.port}`));
    const run = spawnSync(process.execPath, ['snippet.mjs'], { cwd: dir, encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stdout, 'Echo: Hi\n');
  });

  it('the Python snippet (OpenAI SDK) gets the mock\'s answer', (t) => {
    if (spawnSync('python3', ['--version']).status !== 0) return t.skip('no python3 on this machine');
    const code = snippet('## Using it', 'python');
    assert.match(code, /api_key="vk_demo"/);
    const dir = tempDir();
    writeFileSync(
      join(dir, 'openai.py'),
      [
        'import json, urllib.request',
        'class _Obj:',
        '    def __init__(self, d):',
        '        for k, v in d.items(): setattr(self, k, _Obj(v) if isinstance(v, dict) else [_Obj(i) if isinstance(i, dict) else i for i in v] if isinstance(v, list) else v)',
        'class _Completions:',
        '    def __init__(self, base_url, api_key): self.base_url, self.api_key = base_url, api_key',
        '    def create(self, **body):',
        "        req = urllib.request.Request(self.base_url + '/chat/completions', data=json.dumps(body).encode(), headers={'authorization': 'Bearer ' + self.api_key, 'content-type': 'application/json'})",
        '        with urllib.request.urlopen(req) as res: return _Obj(json.load(res))',
        'class OpenAI:',
        '    def __init__(self, base_url, api_key):',
        '        self.chat = _Obj({})',
        '        self.chat.completions = _Completions(base_url, api_key)',
        '',
      ].join('\n'),
    );
    writeFileSync(join(dir, 'snippet.py'), code.replaceAll('localhost:8080', `127.0.0.1:${demo.port}`));
    const run = spawnSync('python3', ['snippet.py'], { cwd: dir, encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stdout, 'Echo: Hi\n');
  });

  it('examples/ask.mjs, with its defaults, gets the mock\'s answer', async () => {
    const run = spawnSync(process.execPath, [join(ROOT, 'examples', 'ask.mjs'), 'Hello there'], { encoding: 'utf8', env: { ...process.env, GATEWAY_URL: demo.url } });
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stdout, 'Echo: Hello there\n');
    // A mistyped command line, and no gateway where it looks: one line each, no stack trace.
    const bare = spawnSync(process.execPath, [join(ROOT, 'examples', 'ask.mjs'), '--model'], { encoding: 'utf8' });
    assert.deepEqual([bare.status, bare.stderr.trim().split('\n').length], [2, 1], bare.stderr);
    assert.match(bare.stderr, /^--model needs a value/);
    const mistyped = spawnSync(process.execPath, [join(ROOT, 'examples', 'ask.mjs'), '--strem', 'Hi'], { encoding: 'utf8' });
    assert.deepEqual([mistyped.status, mistyped.stderr.trim().split('\n').length], [2, 1], mistyped.stderr);
    assert.match(mistyped.stderr, /^unknown option --strem: node examples\/ask\.mjs/);
    // After `--`, a question may begin like an option.
    const dashed = spawnSync(process.execPath, [join(ROOT, 'examples', 'ask.mjs'), '--', 'what', 'does', '--model', 'do?'], { encoding: 'utf8', env: { ...process.env, GATEWAY_URL: demo.url } });
    assert.equal(dashed.stdout, 'Echo: what does --model do?\n', dashed.stderr);
    const nowhereUrl = `http://127.0.0.1:${await refusingPort()}`;
    const nowhere = spawnSync(process.execPath, [join(ROOT, 'examples', 'ask.mjs'), 'Hi'], { encoding: 'utf8', env: { ...process.env, GATEWAY_URL: nowhereUrl } });
    assert.equal(nowhere.status, 1);
    assert.equal(nowhere.stderr, `cannot reach the gateway at ${nowhereUrl}: ECONNREFUSED (is it running? GATEWAY_URL sets where)\n`);
  });

  it('the README speaks about the product, not about how it was made', () => {
    assert.doesNotMatch(README, /\bthe seed\b|\bthe issue\b/i);
  });
});

describe('a fresh clone', () => {
  it('keys.example.json copied with a real provider key in it does not start: its virtual keys are published, and the message says what to do', async () => {
    const dir = tempDir();
    const example = readFileSync(join(ROOT, 'keys.example.json'), 'utf8');
    assert.match(example, /"vk_user1_openai"/);
    writeFileSync(join(dir, 'keys.json'), example.replace('sk-your-openai-key', 'sk-proj-AbCdEf0123456789AbCdEf0123456789'));
    const run = await runGatewayUntilExit({ LOG_CONSOLE: 'off' }, dir);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /keys\.json: virtual key #2 \(vk_us…\): "vk_user1_openai" is an example virtual key, published in the README, and it guards a real openai key/);
    assert.match(run.stderr, /make one with: echo vk_\$\(openssl rand -hex 16\)/);
    assert.doesNotMatch(run.stderr, /AbCdEf0123456789/);
  });

  it('`npm start` builds first, then starts the gateway', async () => {
    const dir = tempDir();
    for (const entry of ['package.json', 'tsconfig.json', 'src']) cpSync(join(ROOT, entry), join(dir, entry), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
    writeFileSync(join(dir, 'keys.json'), JSON.stringify({ virtual_keys: { vk_demo: { provider: 'mock' } } }));
    // No dist/ here: a start that does not build fails with "Cannot find module".
    const npm = endWithFile(
      spawn('npm', ['start'], {
        cwd: dir,
        env: { PATH: process.env.PATH ?? '', GATEWAY_PORT: '0', GATEWAY_HOST: '127.0.0.1', LOG_FILE: 'off', LOG_CONSOLE: 'off' },
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      }),
      true,
    );
    let output = '';
    npm.stdout.setEncoding('utf8').on('data', (text: string) => (output += text));
    npm.stderr.setEncoding('utf8').on('data', (text: string) => (output += text));
    try {
      await waitFor(() => /listening on http:\/\//.test(output) || npm.exitCode !== null, 'the gateway to start', 60_000);
      assert.match(output, /listening on http:\/\//, output);
    } finally {
      if (npm.pid !== undefined && npm.exitCode === null) process.kill(-npm.pid, 'SIGTERM');
    }
  });
});

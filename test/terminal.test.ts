/**
 * What reaches a terminal (the log, warnings, `npm run usage --json`) holds no raw DEL or C1
 * control: a terminal acts on them (U+009B as on ESC [), and JSON leaves them raw.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { random } from '../bench/fixtures.js';
import { escapeTerminalBytes, hasTerminalControls, terminalText } from '../src/observe/terminal.js';
import { warn } from '../src/observe/warn.js';
import { ROOT, tempDir } from './support/gateway.js';

const CONTROLS = /[\u007f-\u009f]/;
const escapedAsJson = (text: string): string => text.replace(/[\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
const rawControls = (bytes: Buffer): boolean => CONTROLS.test(bytes.toString('utf8'));

describe('DEL and C1 controls', () => {
  it('are found in UTF-8 bytes wherever they are, among other characters of two bytes however many (a native search each, then a look at every byte)', () => {
    const next = random(7);
    const alphabet = ['a', '"', '\\', 'é', '°', '\u00a0', '\u0080', '\u0085', '\u009b', '\u009f', '\u007f', '\u00c2', 'ł', '中', '😀', '\u0000'];
    for (let round = 0; round < 3000; round++) {
      const length = Math.floor(next() * 300);
      let text = '';
      for (let i = 0; i < length; i++) text += alphabet[Math.floor(next() * (round % 3 === 0 ? 8 : alphabet.length))] as string;
      const bytes = Buffer.from(text);
      assert.equal(hasTerminalControls(bytes), CONTROLS.test(text), JSON.stringify(text));
      const escaped = escapeTerminalBytes(bytes);
      assert.equal(escaped.toString('utf8'), escapedAsJson(text), JSON.stringify(text));
      assert.equal(rawControls(escaped), false);
    }
    // Past many characters of U+0080–U+00BF, the one control after them still counts.
    assert.equal(hasTerminalControls(Buffer.from(`${'°'.repeat(10_000)}\u0085`)), true);
    assert.equal(hasTerminalControls(Buffer.from('°'.repeat(10_000))), false);
    assert.equal(hasTerminalControls(Buffer.from([0xc2])), false, 'a lead byte at the end is no control');
    // Two close together start a stretch looked at byte by byte: a control at its end, or just past it, counts.
    for (let gap = 4085; gap < 4105; gap++) {
      assert.equal(hasTerminalControls(Buffer.from(`°°${'a'.repeat(gap)}\u0085`)), true, String(gap));
      assert.equal(hasTerminalControls(Buffer.from(`°°${'a'.repeat(gap)}°${'b'.repeat(gap)}\u009b`)), true, String(gap));
      assert.equal(hasTerminalControls(Buffer.from(`°°${'a'.repeat(gap)}°`)), false, String(gap));
    }
  });

  it('escaped in JSON, leave every value the same', () => {
    const value = { model: 'gpt\u009b2J\u007f', messages: [{ role: 'user', content: 'a\\\u0085b "\u0080" ° é' }], n: 1 };
    const escaped = escapeTerminalBytes(Buffer.from(JSON.stringify(value)));
    assert.equal(rawControls(escaped), false);
    assert.deepEqual(JSON.parse(escaped.toString()), value);
  });

  it('in a warning on stderr (a client chose the model name it quotes), and the C0 ones but tab and line feed, are escapes', () => {
    assert.equal(terminalText('model "m\u009b2J\u001b[31m\u007f"\tthen\nmore'), 'model "m\\u009b2J\\u001b[31m\\u007f"\tthen\nmore');
    const written: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) => written.push(chunk) > 0) as typeof process.stderr.write;
    try {
      warn('the model "gpt-\u009b2J" has no price');
    } finally {
      process.stderr.write = write;
    }
    assert.deepEqual(written, ['llm-gateway: the model "gpt-\\u009b2J" has no price\n']);
  });

  it('in `npm run usage --json`, are JSON escapes: the same names to a JSON reader', () => {
    const dir = tempDir();
    const file = join(dir, 'log.json');
    const model = 'gpt-\u009b2J\u007f';
    writeFileSync(file, `${JSON.stringify({ timestamp: '2026-12-05T00:00:00.000Z', key_name: 'team\u0085', provider: 'openai', model, status: 200, usage: { input_tokens: 1, output_tokens: 1 }, cost_usd: 0.001 }, null, 2)}\n`);
    const report = spawnSync(process.execPath, [join(ROOT, 'dist', 'usage.js'), '--file', file, '--all', '--json']);
    assert.equal(report.status, 0, report.stderr.toString());
    assert.equal(rawControls(report.stdout), false, report.stdout.toString());
    const json = JSON.parse(report.stdout.toString()) as { by_key: Record<string, unknown>; by_model: Record<string, unknown> };
    assert.deepEqual(Object.keys(json.by_key), ['team\u0085']);
    assert.deepEqual(Object.keys(json.by_model), [`openai/${model}`]);
  });
});

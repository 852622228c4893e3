import assert from 'node:assert/strict';
import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { makeFolders } from '../src/folders.js';

describe('makeFolders', () => {
  it('makes the missing folders of a path, and takes one that is there', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'llm-gateway-folders-'));
    await makeFolders(join(dir, 'a', 'b', 'c'));
    assert.ok(statSync(join(dir, 'a', 'b', 'c')).isDirectory());
    await makeFolders(join(dir, 'a', 'b'));
    await makeFolders(dir);
  });

  it('fails where a file stands in the path', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'llm-gateway-folders-'));
    writeFileSync(join(dir, 'file'), '');
    await assert.rejects(makeFolders(join(dir, 'file')), { code: 'EEXIST' });
    await assert.rejects(makeFolders(join(dir, 'file', 'below')), { code: 'ENOTDIR' });
  });

  it('fails, rather than trying forever, where a folder cannot be made in one that exists (/proc)', { skip: process.platform !== 'linux', timeout: 5000 }, async () => {
    // Node's own recursive mkdir never returns here.
    await assert.rejects(makeFolders('/proc/llm-gateway-nope/logs'), { code: 'ENOENT' });
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chatClient } from '../src/formats/chat/index.js';
import { countMediaParts } from '../src/formats/media.js';
import { messagesClient } from '../src/formats/messages/index.js';
import { responsesClient } from '../src/formats/responses/index.js';

describe('media parts counted from a body\'s bytes', () => {
  it('counts each API\'s image, audio and file parts by their type, however the JSON is spaced; not keys of that name, nor text that spells one', () => {
    const chat = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: [{ type: 'text', text: 'see "image_url" and {"type":"file"}' }, { type: 'image_url', image_url: { url: 'https://x/1.png' } }, { type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }, { type: 'file', file: { file_id: 'file-1' } }] }] });
    assert.equal(countMediaParts(Buffer.from(chat), chatClient.mediaTypes), 3);
    // Python's json.dumps writes ", " and ": ".
    const spaced = JSON.stringify(JSON.parse(chat), null, 1).replaceAll('":', '" :');
    assert.equal(countMediaParts(Buffer.from(spaced), chatClient.mediaTypes), 3);
    const messages = JSON.stringify({ model: 'm', max_tokens: 1, messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'url', url: 'https://x/1.png' } }, { type: 'document', source: { type: 'file', file_id: 'file_1' } }, { type: 'text', text: 'what is in this image?' }] }] });
    assert.equal(countMediaParts(Buffer.from(messages), messagesClient.mediaTypes), 2);
    const responses = JSON.stringify({ model: 'm', input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'https://x/1.png' }, { type: 'input_file', file_id: 'file-1' }, { type: 'input_text', text: 'describe "input_image"' }] }] });
    assert.equal(countMediaParts(Buffer.from(responses), responsesClient.mediaTypes), 2);
    assert.equal(countMediaParts(Buffer.from(JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] })), chatClient.mediaTypes), 0);
  });
});

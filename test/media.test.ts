import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chatClient } from '../src/formats/chat/index.js';
import { countMediaParts } from '../src/formats/media.js';
import { messagesClient } from '../src/formats/messages/index.js';
import { responsesClient } from '../src/formats/responses/index.js';

describe('media parts of a request', () => {
  it("counts each API's image, audio and file parts by their type, however the client spelt it; not a tool, a schema or a text merely named so", () => {
    const chat = { model: 'm', messages: [{ role: 'user', content: [{ type: 'text', text: 'see "image_url" and {"type":"file"}' }, { type: 'image_url', image_url: { url: 'https://x/1.png' } }, { type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }, { type: 'file', file: { file_id: 'file-1' } }] }], tools: [{ type: 'function', function: { name: 'image_url', parameters: { type: 'object', properties: { file: { type: 'string' } }, required: ['file'] } } }] };
    assert.equal(countMediaParts(chat, chatClient.mediaTypes), 3);
    // The same value written with an escape, as the provider decodes it.
    const escaped = JSON.parse(JSON.stringify(chat).replaceAll('"type":"image_url"', '"type":"image\\u005furl"'));
    assert.equal(countMediaParts(escaped, chatClient.mediaTypes), 3);
    const messages = { model: 'm', max_tokens: 1, tools: [{ name: 'image', input_schema: { type: 'object' } }], messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'url', url: 'https://x/1.png' } }, { type: 'document', source: { type: 'file', file_id: 'file_1' } }, { type: 'text', text: 'image' }] }, { role: 'assistant', content: [{ type: 'tool_use', id: 't', name: 'image', input: {} }] }, { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } }] }] }] };
    assert.equal(countMediaParts(messages, messagesClient.mediaTypes), 3);
    // A tool whose input has a type of that name, or a schema's example, is not a part.
    const calls = { model: 'm', max_tokens: 1, tools: [{ name: 'open', input_schema: { type: 'object', examples: [{ type: 'document' }] } }], messages: Array.from({ length: 30 }, (_, i) => ({ role: 'assistant', content: [{ type: 'tool_use', id: `t${i}`, name: 'open', input: { type: 'document', path: 'a.md' } }] })) };
    assert.equal(countMediaParts(calls, messagesClient.mediaTypes), 0);
    const responses = { model: 'm', input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'https://x/1.png' }, { type: 'input_file', file_id: 'file-1' }, { type: 'input_text', text: 'input_image' }] }, { type: 'function_call_output', call_id: 'c', output: [{ type: 'input_image', image_url: 'https://x/2.png' }] }] };
    assert.equal(countMediaParts(responses, responsesClient.mediaTypes), 3);
    assert.equal(countMediaParts({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }, chatClient.mediaTypes), 0);
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CompletionAssembler } from '../src/formats/chat/assemble.js';
import { chatStreamWatch } from '../src/formats/chat/stream.js';
import type { ChatCompletionChunk } from '../src/formats/chat/types.js';

const base = { id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1730000000, model: 'gpt-4o', system_fingerprint: 'fp_x' };

describe('CompletionAssembler', () => {
  it('assembles text, reasoning, finish_reason and usage into a chat.completion; the stream watch sees the finish and the usage', () => {
    const assembler = new CompletionAssembler();
    const watch = chatStreamWatch();
    const add = (chunk: Record<string, unknown>): void => {
      assembler.add(chunk);
      watch.see(chunk as ChatCompletionChunk);
    };
    add({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '', reasoning_content: '' }, finish_reason: null }] });
    add({ ...base, choices: [{ index: 0, delta: { content: null, reasoning_content: 'Think' }, finish_reason: null }] });
    add({ ...base, choices: [{ index: 0, delta: { content: 'Hel' }, finish_reason: null }] });
    add({ ...base, choices: [{ index: 0, delta: { content: 'lo!' }, finish_reason: null }] });
    assert.equal(watch.complete, false);
    add({ ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
    add({ ...base, choices: [], usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 } });
    assert.equal(watch.complete, true);
    assert.deepEqual(watch.usage(), { input: 9, output: 3, cacheRead: 0, cacheWrite: 0, cacheWrite1h: 0, reasoning: 0 });
    assert.deepEqual(assembler.result(), {
      id: 'chatcmpl-1',
      object: 'chat.completion',
      created: 1730000000,
      model: 'gpt-4o',
      choices: [{ index: 0, message: { role: 'assistant', content: 'Hello!', reasoning_content: 'Think' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 },
      system_fingerprint: 'fp_x',
    });
  });

  it('assembles parallel tool calls from fragments by index', () => {
    const assembler = new CompletionAssembler();
    const tool = (calls: unknown[], finish: string | null = null) => ({ ...base, choices: [{ index: 0, delta: { tool_calls: calls }, finish_reason: finish }] });
    assembler.add({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: null }, finish_reason: null }] });
    assembler.add(tool([{ index: 0, id: 'call_a', type: 'function', function: { name: 'get_weather', arguments: '' } }]));
    assembler.add(tool([{ index: 0, function: { arguments: '{"ci' } }]));
    assembler.add(tool([{ index: 0, function: { arguments: 'ty":"Paris"}' } }]));
    assembler.add(tool([{ index: 1, id: 'call_b', type: 'function', function: { name: 'get_time', arguments: '' } }]));
    assembler.add(tool([{ index: 1, function: { arguments: '{}' } }]));
    assembler.add({ ...base, choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] });
    const message = assembler.result().choices[0]?.message;
    assert.equal(message?.content, null);
    assert.deepEqual(message?.tool_calls, [
      { id: 'call_a', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
      { id: 'call_b', type: 'function', function: { name: 'get_time', arguments: '{}' } },
    ]);
    assert.deepEqual(JSON.parse(message?.tool_calls?.[0]?.function.arguments ?? ''), { city: 'Paris' });
  });

  it('keeps reasoning under the name the server gave it (`reasoning_content`, or `reasoning`)', () => {
    const assembler = new CompletionAssembler();
    assembler.add({ ...base, choices: [{ index: 0, delta: { role: 'assistant', reasoning: 'Hm' }, finish_reason: null }] });
    assembler.add({ ...base, choices: [{ index: 0, delta: { reasoning: 'm.', content: 'Yes.' }, finish_reason: 'stop' }] });
    const message = assembler.result().choices[0]?.message;
    assert.equal(message?.reasoning, 'Hmm.');
    assert.equal(message?.reasoning_content, undefined);
  });

  it('places fragments as the stream translators do: Ollama numbers every call 0, some servers repeat the name and id on every fragment', () => {
    const assembler = new CompletionAssembler();
    const tool = (calls: unknown[]) => ({ ...base, choices: [{ index: 0, delta: { tool_calls: calls }, finish_reason: null }] });
    assembler.add(tool([{ index: 0, id: 'call_a', type: 'function', function: { name: 'read_file', arguments: '{"path":"a"}' } }]));
    assembler.add(tool([{ index: 0, id: 'call_b', type: 'function', function: { name: 'shell', arguments: '{"cmd":' } }]));
    assembler.add(tool([{ index: 0, id: 'call_b', type: 'function', function: { name: 'shell', arguments: '"ls"}' } }]));
    assert.deepEqual(assembler.result().choices[0]?.message.tool_calls, [
      { id: 'call_a', type: 'function', function: { name: 'read_file', arguments: '{"path":"a"}' } },
      { id: 'call_b', type: 'function', function: { name: 'shell', arguments: '{"cmd":"ls"}' } },
    ]);
    // A name after a call's arguments began is no piece of it (calls all numbered 0, without ids).
    const unnumbered = new CompletionAssembler();
    unnumbered.add(tool([{ index: 0, type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }]));
    unnumbered.add(tool([{ index: 0, type: 'function', function: { name: 'get_time', arguments: '{}' } }]));
    assert.equal(unnumbered.result().choices[0]?.message.tool_calls?.[0]?.function.name, 'get_weather');
    // A name that comes after the arguments is the call's name all the same.
    const late = new CompletionAssembler();
    late.add(tool([{ index: 0, id: 'call_l', type: 'function', function: { arguments: '{"city":"Paris"}' } }]));
    late.add(tool([{ index: 0, function: { name: 'get_weather' } }]));
    assert.equal(late.result().choices[0]?.message.tool_calls?.[0]?.function.name, 'get_weather');
    // Pieces of a late name, before the arguments that follow them, are joined too.
    const latePieces = new CompletionAssembler();
    latePieces.add(tool([{ index: 0, id: 'call_p', type: 'function', function: { arguments: '{"city":' } }]));
    latePieces.add(tool([{ index: 0, function: { name: 'get_' } }]));
    latePieces.add(tool([{ index: 0, function: { name: 'weather', arguments: '"Paris"}' } }]));
    assert.deepEqual(latePieces.result().choices[0]?.message.tool_calls?.[0]?.function, { name: 'get_weather', arguments: '{"city":"Paris"}' });
    // A name sent in pieces (Gemini's may), or sent whole again with more of it, is joined.
    for (const [first, second] of [['get_', 'weather'], ['get_', 'get_weather']]) {
      const pieces = new CompletionAssembler();
      pieces.add(tool([{ index: 0, id: 'call_c', type: 'function', function: { name: first, arguments: '' } }]));
      pieces.add(tool([{ index: 0, function: { name: second, arguments: '{"city":"Paris"}' } }]));
      assert.deepEqual(pieces.result().choices[0]?.message.tool_calls, [{ id: 'call_c', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }], `${first} + ${second}`);
    }
  });

  it('keeps several choices apart (n > 1) and takes usage from a finish chunk (DeepSeek style)', () => {
    const assembler = new CompletionAssembler();
    assembler.add({ ...base, choices: [{ index: 1, delta: { content: 'B' }, finish_reason: null }, { index: 0, delta: { content: 'A' }, finish_reason: null }] });
    assembler.add({ ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }, { index: 1, delta: {}, finish_reason: 'length' }], usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } });
    const result = assembler.result();
    assert.deepEqual(result.choices.map((choice) => [choice.index, choice.message.content, choice.finish_reason]), [
      [0, 'A', 'stop'],
      [1, 'B', 'length'],
    ]);
    assert.equal(result.usage?.total_tokens, 3);
  });

  it('ignores malformed chunks instead of throwing', () => {
    const assembler = new CompletionAssembler();
    for (const junk of [null, 42, 'x', [], { choices: 'no' }, { choices: [null, 5, { delta: 'x' }] }, { choices: [{ delta: { tool_calls: [null, { index: 'a' }] } }] }]) {
      assembler.add(junk as never);
    }
    assert.equal(assembler.result().object, 'chat.completion');
  });
});

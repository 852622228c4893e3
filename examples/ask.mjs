#!/usr/bin/env node
// Ask one virtual key a question through the gateway (zero dependencies: global fetch).
//
//   node examples/ask.mjs "What is the capital of France?"
//   node examples/ask.mjs --stream --key vk_<your openai key> --model gpt-4o-mini "Tell me a joke"
//
// GATEWAY_URL defaults to http://localhost:8080.
// After `--`, all is the question (it may begin like an option).
const given = process.argv.slice(2);
const end = given.indexOf('--');
const args = end === -1 ? given : given.slice(0, end);
const after = end === -1 ? [] : given.slice(end + 1);
const USAGE = 'node examples/ask.mjs [--stream] [--key vk_…] [--model name] "question"';
const option = (name, fallback) => {
  const at = args.indexOf(`--${name}`);
  if (at === -1) return fallback;
  const [, value] = args.splice(at, 2);
  if (value === undefined || value.startsWith('--')) {
    console.error(`--${name} needs a value: ${USAGE}`);
    process.exit(2);
  }
  return value;
};
const stream = args.includes('--stream') ? (args.splice(args.indexOf('--stream'), 1), true) : false;
const key = option('key', 'vk_demo');
const model = option('model', 'demo-model');
// A mistyped option is not part of the question (`--` before a question that starts with one).
const unknown = args.find((arg) => arg.startsWith('--'));
if (unknown !== undefined) {
  console.error(`unknown option ${unknown}: ${USAGE}`);
  process.exit(2);
}
args.push(...after);
const question = args.join(' ') || 'Hello! Which model are you?';
const gateway = process.env.GATEWAY_URL ?? 'http://localhost:8080';

const response = await fetch(`${gateway}/v1/chat/completions`, {
  method: 'POST',
  headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
  body: JSON.stringify({ model, stream, messages: [{ role: 'user', content: question }] }),
}).catch((err) => {
  console.error(`cannot reach the gateway at ${gateway}: ${err.cause?.code ?? err.message} (is it running? GATEWAY_URL sets where)`);
  process.exit(1);
});
console.error(`HTTP ${response.status}, x-request-id ${response.headers.get('x-request-id')}`);

if (!response.ok) {
  console.error(JSON.stringify(await response.json(), null, 2));
  process.exit(1);
}
if (!stream) {
  const completion = await response.json();
  console.log(completion.choices[0].message.content);
  console.error(`usage: ${JSON.stringify(completion.usage)}`);
  process.exit(0);
}

// Streaming: print each content delta as it arrives.
const decoder = new TextDecoder();
let buffer = '';
for await (const bytes of response.body) {
  buffer += decoder.decode(bytes, { stream: true });
  let end;
  while ((end = buffer.indexOf('\n\n')) !== -1) {
    const event = buffer.slice(0, end);
    buffer = buffer.slice(end + 2);
    for (const line of event.split('\n')) {
      if (!line.startsWith('data: ')) continue;
      const data = line.slice(6);
      if (data === '[DONE]') continue;
      const chunk = JSON.parse(data);
      if (chunk.error) {
        console.error(`\nstream error: ${chunk.error.message}`);
        process.exit(1);
      }
      process.stdout.write(chunk.choices[0]?.delta?.content ?? '');
    }
  }
}
process.stdout.write('\n');

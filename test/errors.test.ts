import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GatewayError, openAiErrorBody, toGatewayError } from '../src/errors.js';
import { errorStatus } from '../src/formats/answer.js';

describe('errors', () => {
  it('turn anything unexpected into a bare 500: no message or stack for the client, the stack for the log', () => {
    const error = toGatewayError(new TypeError('Cannot read properties of undefined (reading "x")'));
    assert.equal(error.status, 500);
    assert.equal(error.code, 'internal_error');
    const body = JSON.stringify(error.toBody());
    assert.doesNotMatch(body, /TypeError|Cannot read|at .*\.js/);
    assert.match(error.logDetail ?? '', /TypeError: Cannot read properties/);
    assert.match(error.logDetail ?? '', /\n\s+at /, 'the stack goes to the log');
    assert.equal(toGatewayError('a string').code, 'internal_error');
  });

  it('render OpenAI\'s error body, with a type that follows the status', () => {
    assert.deepEqual(new GatewayError(404, 'nope', { code: 'not_found' }).toBody(), { error: { message: 'nope', type: 'not_found_error', param: null, code: 'not_found' } });
    assert.deepEqual([400, 401, 403, 429, 503].map((status) => new GatewayError(status, 'x').type), ['invalid_request_error', 'authentication_error', 'permission_error', 'rate_limit_error', 'server_error']);
    const known = new GatewayError(502, 'x');
    assert.equal(toGatewayError(known), known, 'a GatewayError passes as it is');
  });

  it("give an OpenAI client the code OpenAI would where the provider gave none, a quota before a 429, and keep any code given", () => {
    const code = (error: GatewayError) => openAiErrorBody(error).error.code;
    assert.equal(code(new GatewayError(400, 'prompt is too long: 210000 tokens > 200000 maximum', { type: 'invalid_request_error' })), 'context_length_exceeded');
    assert.equal(code(new GatewayError(429, 'You exceeded your current quota.', { type: 'insufficient_quota' })), 'insufficient_quota', 'Codex stops on it, where it would wait on a rate limit');
    assert.equal(code(new GatewayError(429, 'Number of request tokens has exceeded your per-minute rate limit', { type: 'rate_limit_error' })), 'rate_limit_exceeded');
    assert.equal(code(new GatewayError(429, 'Budget used.', { code: 'budget_exceeded' })), 'budget_exceeded', "the gateway's own code stays");
    assert.equal(code(new GatewayError(529, 'Overloaded', { type: 'overloaded_error' })), null);
  });
});

describe("the status a provider's error object stands for", () => {
  it('is the whole status it names, else its code or type, else 502', () => {
    assert.equal(errorStatus({ status: 429 }), 429);
    assert.equal(errorStatus({ code: '503' }), 503);
    assert.equal(errorStatus({ status: 429.5 }), 502, 'not a status: logged and counted as one it would be');
    assert.equal(errorStatus({ status: 200, code: 'rate_limit_exceeded' }), 429);
    assert.equal(errorStatus({ type: 'overloaded_error' }), 529);
    assert.equal(errorStatus({ message: 'x' }), 502);
  });
});

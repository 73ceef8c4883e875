import { test } from 'node:test';
import assert from 'node:assert/strict';
import { errorMessage, listOf, ApiError } from '../src/api.js';

test('errorMessage never shows markup or stack traces', async () => {
  const cases = [
    [new Response('{"error":"view: unknown \\"foo\\""}', { status: 400 }), 'request failed (HTTP 400): view: unknown "foo"'],
    [new Response('{"error":{"message":"boom"}}', { status: 500 }), 'request failed (HTTP 500): boom'],
    [new Response('<html><body><pre>goroutine 1 [running]:\npanic(...)</pre></body></html>', { status: 500 }), 'request failed (HTTP 500)'],
    [new Response('404 page not found\n', { status: 404 }), 'not available on this server: 404 page not found'],
    [new Response('', { status: 403 }), 'not allowed'],
    [new Response('x'.repeat(500), { status: 502 }), 'request failed (HTTP 502)'],
  ];
  for (const [res, want] of cases) assert.equal(await errorMessage(res), want);
});

test('ApiError classifies statuses', () => {
  assert.ok(new ApiError('x', 404).notAvailable);
  assert.ok(new ApiError('x', 403).forbidden);
  assert.ok(!new ApiError('x', 500).notAvailable);
});

test('listOf unwraps lists', () => {
  assert.deepEqual(listOf([1]), [1]);
  assert.deepEqual(listOf({ items: [2] }), [2]);
  assert.deepEqual(listOf({ incidents: [3] }, 'incidents'), [3]);
  assert.deepEqual(listOf({ nothing: 1 }), []);
  assert.deepEqual(listOf(null), []);
});

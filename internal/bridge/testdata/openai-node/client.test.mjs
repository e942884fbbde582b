// The official openai npm client, unmodified, against the bridge and a
// real worker. TestOpenAINodeClient (openai_node_test.go) starts them and
// runs this file with node --test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const model = process.env.LLMW_MODEL;
const bridge = process.env.LLMW_BRIDGE_URL;
const client = new OpenAI({ baseURL: bridge + '/v1', apiKey: 'unused', maxRetries: 0 });
const idle = new OpenAI({ baseURL: process.env.LLMW_IDLE_BRIDGE_URL + '/v1', apiKey: 'unused', maxRetries: 0 });

const chat = (user, maxTokens, extra = {}) => ({
  model,
  messages: [{ role: 'system', content: 'Tell a story.' }, { role: 'user', content: user }],
  max_tokens: maxTokens,
  temperature: 0,
  ...extra,
});

test('models', async () => {
  const list = await client.models.list();
  assert.deepEqual(list.data.map((m) => m.id), [model]);
  assert.equal((await client.models.retrieve(model)).id, model);
  await assert.rejects(client.models.retrieve('nope'), OpenAI.NotFoundError);
});

let whole;
test('chat', async () => {
  const { data, response } = await client.chat.completions.create(chat('Once upon a time', 24)).withResponse();
  whole = data.choices[0].message.content;
  assert.equal(data.object, 'chat.completion');
  assert.equal(data.model, model);
  assert.equal(data.choices[0].message.role, 'assistant');
  assert.equal(data.choices[0].finish_reason, 'length');
  assert.ok(whole.length > 0);
  assert.equal(data.usage.completion_tokens, 24);
  assert.equal(data.usage.total_tokens, data.usage.prompt_tokens + 24);
  assert.equal(data.id, 'chatcmpl-' + response.headers.get('x-job-id'));
});

test('chat stream with include_usage', async () => {
  const stream = await client.chat.completions.create(
    chat('Once upon a time', 24, { stream: true, stream_options: { include_usage: true } }),
  );
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  const first = chunks[0];
  for (const c of chunks) {
    assert.equal(c.id, first.id);
    assert.equal(c.created, first.created);
    assert.equal(c.model, model);
    assert.equal(c.object, 'chat.completion.chunk');
  }
  assert.equal(first.choices[0].delta.role, 'assistant');
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, []);
  assert.equal(last.usage.completion_tokens, 24);
  assert.equal(chunks.at(-2).choices[0].finish_reason, 'length');
  const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
  assert.equal(text, whole);
});

test('narration in the stream (X-Narration: true)', async () => {
  const stream = await client.chat.completions.create(chat('Once upon a time', 24, { stream: true }), {
    headers: { 'X-Narration': 'true' },
  });
  const actions = new Set();
  let text = '';
  for await (const chunk of stream) {
    if (chunk.narration) {
      assert.deepEqual(chunk.choices, []);
      actions.add(chunk.narration.action);
    } else {
      text += chunk.choices[0].delta.content ?? '';
    }
  }
  for (const a of ['request_validated', 'inference_start', 'tokenize', 'inference_complete']) assert.ok(actions.has(a), a);
  assert.equal(text, whole);
});

test('completion, whole and streamed', async () => {
  const params = { model, prompt: 'Once upon a time', max_tokens: 16, temperature: 0 };
  const c = await client.completions.create(params);
  assert.equal(c.object, 'text_completion');
  assert.equal(c.choices[0].finish_reason, 'length');
  assert.equal(c.usage.completion_tokens, 16);
  let text = '';
  for await (const chunk of await client.completions.create({ ...params, stream: true })) {
    text += chunk.choices[0]?.text ?? '';
  }
  assert.equal(text, c.choices[0].text);
});

test('stop', async () => {
  const stop = ' ' + whole.split(/\s+/).filter(Boolean)[2];
  const c = await client.chat.completions.create(chat('Once upon a time', 24, { stop: [stop] }));
  assert.equal(c.choices[0].message.content, whole.slice(0, whole.indexOf(stop)));
  assert.equal(c.choices[0].finish_reason, 'stop');
});

test('seed reproducibility', async () => {
  const run = async () =>
    (await client.chat.completions.create(chat('The dog', 32, { temperature: 1.2, seed: 7 }))).choices[0].message.content;
  const [a, b] = [await run(), await run()];
  assert.ok(a.length > 0);
  assert.equal(a, b);
});

test('json_schema', async () => {
  const schema = {
    type: 'object',
    properties: {
      name: { type: 'string', maxLength: 20 },
      age: { type: 'integer', minimum: 0, maximum: 120 },
      mood: { enum: ['glad', 'sad'] },
    },
    required: ['name', 'age', 'mood'],
    additionalProperties: false,
  };
  for (const seed of [0, 1, 2]) {
    const c = await client.chat.completions.create(
      chat('Describe the girl.', 200, {
        temperature: 1,
        seed,
        response_format: { type: 'json_schema', json_schema: { name: 'girl', schema, strict: true } },
      }),
    );
    const v = JSON.parse(c.choices[0].message.content);
    assert.deepEqual(Object.keys(v).sort(), ['age', 'mood', 'name']);
    assert.equal(typeof v.name, 'string');
    assert.ok(v.name.length <= 20);
    assert.ok(Number.isInteger(v.age) && v.age >= 0 && v.age <= 120);
    assert.ok(['glad', 'sad'].includes(v.mood));
    assert.equal(c.choices[0].finish_reason, 'stop');
  }
});

test('a bad parameter is a BadRequestError naming it', async () => {
  for (const [param, extra] of [
    ['n', { n: 2 }],
    ['logprobs', { logprobs: true }],
    ['temperature', { temperature: 3 }],
    ['tools', { tools: [{ type: 'function', function: { name: 'f' } }] }],
    ['frequency_penalty', { frequency_penalty: 1 }],
  ]) {
    await assert.rejects(client.chat.completions.create(chat('Once', 8, extra)), (err) => {
      assert.ok(err instanceof OpenAI.BadRequestError, `${param}: ${err}`);
      assert.equal(err.status, 400);
      assert.equal(err.param, param);
      return true;
    });
  }
});

test('an aborted stream ends its job as CANCELLED', async () => {
  for (let attempt = 0; attempt < 3; attempt++) {
    const { data: stream, response } = await client.chat.completions
      .create(chat('Once upon a time', 400, { stream: true }))
      .withResponse();
    const id = response.headers.get('x-job-id');
    let n = 0;
    for await (const _ of stream) {
      if (++n === 3) break; // leaving the loop aborts the request
    }
    const events = await (await fetch(`${bridge}/v1/jobs/${id}/events`)).text();
    const end = events.split('\n').filter((l) => l.startsWith('data: ')).map((l) => JSON.parse(l.slice(6))).at(-1);
    assert.equal(end.type, 'end');
    if (end.stop_reason === 'CANCELLED') {
      assert.ok(end.tokens_out < 400);
      const status = await (await fetch(`${bridge}/v1/jobs/${id}`)).json();
      assert.equal(status.status, 'cancelled');
      return;
    }
    // The job finished before its cancel reached it: try again.
  }
  assert.fail('every job finished before its cancel');
});

test('no worker for the model', async () => {
  await assert.rejects(client.chat.completions.create({ ...chat('Once', 4), model: 'nope' }), (err) => {
    assert.ok(err instanceof OpenAI.NotFoundError, String(err));
    assert.equal(err.code, 'model_not_found');
    return true;
  });
  await assert.rejects(idle.chat.completions.create(chat('Once', 4)), (err) => {
    assert.ok(err instanceof OpenAI.InternalServerError, String(err));
    assert.equal(err.status, 503);
    return true;
  });
});

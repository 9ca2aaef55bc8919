// api_tiny.test.mjs: `run -m serve` on the tiny random-weight model, driven by the official
// `openai` client: every endpoint streamed and not answers 200 with what the model generated as
// content (it never writes harmony) and an honest finish_reason; greedy output of a request is
// byte-identical whether it runs alone or beside 15 others (continuous batching); SIGINT stops it,
// exit 0.
// env: RUN (the run binary), MODEL, TOKENIZER; RUN_PREFIX (e.g. "mpirun -np 2") optional.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startServer, stopServer, metrics } from "./server.mjs";

let server, client, model;

before(async () => {
  const prefix = (process.env.RUN_PREFIX || "").split(" ").filter(Boolean);
  const args = [process.env.RUN, process.env.MODEL, "-z", process.env.TOKENIZER, "-m", "serve",
                "--port", "0", "-b", "16", "-c", "512"];
  server = await startServer(prefix.length ? prefix[0] : args.shift(), prefix.length ? [...prefix.slice(1), ...args] : args);
  client = new OpenAI({ baseURL: server.url + "/v1", apiKey: "none", maxRetries: 0 });
  model = (await client.models.list()).data[0].id;
});
after(async () => {
  if (!server) return;
  try {
    await stopServer(server, { signal: "SIGINT" });  // run's own SIGINT handler (SIGTERM: serve_test.sh)
  } finally {
    if (server.proc.exitCode === null) server.proc.kill("SIGKILL");
  }
});

test("chat, whole and streamed: 200, the generated text as content, finish length", async () => {
  const req = { model, messages: [{ role: "user", content: "Hello there" }], max_tokens: 8, temperature: 0 };
  const r = await client.chat.completions.create(req);
  assert.equal(r.choices[0].finish_reason, "length");
  assert.equal(r.usage.completion_tokens, 8);
  assert.equal(typeof r.choices[0].message.content, "string");
  assert.ok(r.choices[0].message.content.length > 0);
  let text = "";
  for await (const c of await client.chat.completions.create({ ...req, stream: true }))
    if (c.choices[0] && c.choices[0].delta.content) text += c.choices[0].delta.content;
  assert.equal(text, r.choices[0].message.content);
});

test("completions and responses: 200 with text", async () => {
  const c = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 6, temperature: 0 });
  assert.equal(c.choices[0].finish_reason, "length");
  assert.equal(c.usage.completion_tokens, 6);
  let text = "";
  for await (const ch of await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 6, temperature: 0, stream: true }))
    text += ch.choices[0] ? ch.choices[0].text : "";
  assert.equal(text, c.choices[0].text);
  const r = await client.responses.create({ model, input: "Hi", max_output_tokens: 6, temperature: 0 });
  assert.equal(r.status, "incomplete");
  assert.equal(r.incomplete_details.reason, "max_output_tokens");
  assert.equal(r.usage.output_tokens, 6);
  assert.ok(r.output_text.length > 0);
});

test("greedy output alone = beside 15 others, byte for byte", async () => {
  const ask = (i, n) => client.chat.completions.create({
    model, temperature: 0, max_tokens: n,
    messages: [{ role: "user", content: `Request ${i}: ${"tell me more ".repeat(i % 5)}` }],
  });
  const alone = await ask(0, 24);
  const together = await Promise.all(Array.from({ length: 16 }, (_, i) => ask(i, i === 0 ? 24 : 8 + i)));
  assert.equal(together[0].choices[0].message.content, alone.choices[0].message.content);
  // Sampling with a seed is reproducible too.
  const seeded = () => client.chat.completions.create({
    model, temperature: 1, seed: 42, max_tokens: 12, messages: [{ role: "user", content: "seeded" }] });
  const [a, b] = await Promise.all([seeded(), seeded()]);
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
  const m = await metrics(server.url);
  assert.ok(m.gptoss_generation_tokens_total > 0);
  assert.equal(m.gptoss_running_sequences, 0);
});

// api_limits.test.mjs: the queue limit (429) and shutdown (SIGTERM or SIGINT: requests in flight
// finish, new ones get 503, exit 0; one that outlasts the grace (5 s in the scripted server) is cut
// then; a second SIGTERM cuts what still runs at once; a cut request's client gets an error) on
// the scripted engine with one slot and a queue of one.
// env: SCRIPTED (the server binary), TOKENIZER (tokenizer file).
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startServer, stopServer, waitFor, metrics } from "./server.mjs";

const start = () => startServer(process.env.SCRIPTED, [process.env.TOKENIZER, "-b", "1", "--max-queue", "1", "--step-ms", "20"]);
const body = (content, extra = {}) => JSON.stringify({ model: "scripted", messages: [{ role: "user", content }], ...extra });
const post = (url, b, signal) =>
  fetch(url + "/v1/chat/completions", { method: "POST", headers: { "Content-Type": "application/json" }, body: b, signal });

// Each test has its own server, killed whatever happens.
async function withServer(fn) {
  const server = await start();
  try {
    await fn(server);
  } finally {
    if (server.proc.exitCode === null) server.proc.kill("SIGKILL");
  }
}

test("beyond -b running and --max-queue waiting: 429 with an error object", () => withServer(async (server) => {
  const client = new OpenAI({ baseURL: server.url + "/v1", apiKey: "none", maxRetries: 0 });
  const ac = new AbortController();
  const a = post(server.url, body("SCRIPT:slow"), ac.signal).catch(() => null);
  const b = post(server.url, body("SCRIPT:slow"), ac.signal).catch(() => null);
  assert.ok(await waitFor(async () => {
    const m = await metrics(server.url);
    return m.gptoss_running_sequences === 1 && m.gptoss_queue_depth === 1;
  }) >= 0, "two requests did not get in");
  await assert.rejects(
    client.chat.completions.create({ model: "scripted", messages: [{ role: "user", content: "x" }] }),
    (e) => e instanceof OpenAI.RateLimitError && e.status === 429 && e.error.code === "rate_limit_exceeded");
  ac.abort();
  await Promise.all([a, b]);
  assert.ok(await waitFor(async () => {  // the server notices both clients left
    const m = await metrics(server.url);
    return m.gptoss_running_sequences === 0 && m.gptoss_queue_depth === 0;
  }) >= 0, "the aborted requests were not cancelled");
  const r = await client.chat.completions.create({ model: "scripted", messages: [{ role: "user", content: "SCRIPT:reason" }] });
  assert.equal(r.choices[0].message.content, "2 + 2 = 4.");
  const m = await metrics(server.url);
  assert.equal(m['gptoss_requests_total{endpoint="chat",status="429"}'], 1);
  await stopServer(server);
}));

for (const sig of ["SIGTERM", "SIGINT"]) {
  test(`${sig}: the request in flight finishes, new ones get 503, exit 0`, () => withServer(async (server) => {
    const inflight = post(server.url, body("SCRIPT:slow", { max_tokens: 40 }));
    assert.ok(await waitFor(async () => (await metrics(server.url)).gptoss_running_sequences === 1) >= 0);
    server.proc.kill(sig);
    assert.ok(await waitFor(async () => (await fetch(server.url + "/health")).status === 503) >= 0);
    const refused = await post(server.url, body("x"));
    assert.equal(refused.status, 503);
    assert.equal((await refused.json()).error.code, "server_shutting_down");
    const r = await inflight;
    assert.equal(r.status, 200);
    const j = await r.json();
    assert.equal(j.choices[0].finish_reason, "length");
    assert.equal(j.usage.completion_tokens, 40);
    const ms = await stopServer(server, { times: 0, withinMs: 10000 });
    assert.ok(ms < 10000);
  }));
}

// Reads an SSE response to its end; a read error (the server gone) ends it too.
async function readRest(reader, text) {
  const dec = new TextDecoder();
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch {
      break;
    }
    if (chunk.done) break;
    text += dec.decode(chunk.value);
  }
  return text;
}

test("SIGINT: a request that outlasts the grace is cut when it ends: an error event, exit 0", () => withServer(async (server) => {
  // SCRIPT:slow is 400 tokens at 20 ms a step or more: 8 s or more, beyond the 5 s grace.
  const r = await post(server.url, body("SCRIPT:slow", { stream: true }));
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let text = "";
  while (!text.includes("content")) text += dec.decode((await reader.read()).value);
  const t0 = Date.now();
  server.proc.kill("SIGINT");
  assert.ok(await waitFor(async () => (await fetch(server.url + "/health")).status === 503) >= 0);
  text = await readRest(reader, text);
  const cutMs = Date.now() - t0;
  assert.match(text, /"code":"server_shutting_down"/);
  assert.ok(!text.includes('"finish_reason":"stop"'), "the request finished instead of being cut");
  assert.ok(cutMs >= 4000, `cut after ${cutMs} ms, before the 5 s grace`);
  await stopServer(server, { times: 0, withinMs: 10000 });
}));

test("a second SIGTERM cuts what still runs: the stream ends with an error event, exit 0", () => withServer(async (server) => {
  const r = await post(server.url, body("SCRIPT:slow", { stream: true }));
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let text = "";
  while (!text.includes("content")) text += dec.decode((await reader.read()).value);
  server.proc.kill("SIGTERM");
  await new Promise((res) => setTimeout(res, 100));
  server.proc.kill("SIGTERM");
  // The server writes the error event and then exits: on a loaded machine the connection can be
  // gone (reset) by the time the client reads on, so a read error ends the loop too; the error
  // event must have arrived either way.
  text = await readRest(reader, text);
  assert.match(text, /"code":"server_shutting_down"/);
  await stopServer(server, { times: 0, withinMs: 10000 });
}));

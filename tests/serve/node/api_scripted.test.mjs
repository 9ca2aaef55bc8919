// api_scripted.test.mjs: the server's OpenAI API driven by the official `openai` client, on the
// scripted engine (tests/serve/scripted_server.cpp), which makes the "model" write reasoning,
// tool calls, preambles and broken harmony on demand. Every endpoint, streamed and not; errors;
// the API key; the queue limit; disconnects; shutdown.
// env: SCRIPTED (the server binary), TOKENIZER (tokenizer file).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startServer, stopServer, metrics, waitFor } from "./server.mjs";

const KEY = "test-key";
let server, client;

before(async () => {
  server = await startServer(process.env.SCRIPTED, [process.env.TOKENIZER, "--api-key", KEY, "-b", "4"]);
  client = new OpenAI({ baseURL: server.url + "/v1", apiKey: KEY, maxRetries: 0 });
});
after(async () => {
  if (!server) return;
  try {
    await stopServer(server);
  } finally {
    if (server.proc.exitCode === null) server.proc.kill("SIGKILL");
  }
});

const chat = (content, extra = {}) =>
  client.chat.completions.create({ model: "scripted", messages: [{ role: "user", content }], ...extra });

// Chat stream -> the fields a non-streamed reply has, and the chunks.
async function collect(stream) {
  const out = { content: "", reasoning: "", tools: [], finish: null, usage: null, chunks: [] };
  for await (const c of stream) {
    out.chunks.push(c);
    if (c.usage) out.usage = c.usage;
    const ch = c.choices[0];
    if (!ch) continue;
    const d = ch.delta;
    if (d.content) out.content += d.content;
    if (d.reasoning_content) out.reasoning += d.reasoning_content;
    for (const t of d.tool_calls || []) {
      if (!out.tools[t.index]) out.tools[t.index] = { id: t.id, name: t.function.name, arguments: "" };
      out.tools[t.index].arguments += t.function.arguments || "";
    }
    if (ch.finish_reason) out.finish = ch.finish_reason;
  }
  return out;
}

test("GET /v1/models lists the model", async () => {
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), ["scripted"]);
});

test("chat: analysis -> reasoning_content, final -> content", async () => {
  const r = await chat("SCRIPT:reason what is 2+2?");
  const m = r.choices[0].message;
  assert.equal(m.content, "2 + 2 = 4.");
  assert.equal(m.reasoning_content, "The user wants 2+2. That is 4.");
  assert.equal(r.choices[0].finish_reason, "stop");
  assert.equal(r.object, "chat.completion");
  assert.ok(r.usage.prompt_tokens > 0);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  assert.ok(r.usage.completion_tokens_details.reasoning_tokens > 0);
});

test("chat stream: the same reply as deltas, with usage and [DONE]", async () => {
  const whole = await chat("SCRIPT:reason what is 2+2?");
  const s = await collect(await chat("SCRIPT:reason what is 2+2?", { stream: true, stream_options: { include_usage: true } }));
  assert.equal(s.content, whole.choices[0].message.content);
  assert.equal(s.reasoning, whole.choices[0].message.reasoning_content);
  assert.equal(s.finish, "stop");
  assert.deepEqual(s.usage, whole.usage);
  assert.equal(s.chunks[0].choices[0].delta.role, "assistant");
  for (const c of s.chunks) assert.equal(c.object, "chat.completion.chunk");
  for (const c of s.chunks) assert.ok(!/<\|/.test(JSON.stringify(c.choices)), "harmony tokens leaked");
});

const tools = [{
  type: "function",
  function: {
    name: "get_weather", description: "Gets the weather.",
    parameters: { type: "object", properties: { location: { type: "string" } }, required: ["location"] },
  },
}];

test("chat: a tool call, whole and streamed, then the tool's result", async () => {
  const r = await chat("SCRIPT:tool weather in Paris?", { tools });
  const m = r.choices[0].message;
  assert.equal(r.choices[0].finish_reason, "tool_calls");
  assert.equal(m.content, null);
  assert.equal(m.reasoning_content, "Need the weather tool.");
  assert.equal(m.tool_calls.length, 1);
  const call = m.tool_calls[0];
  assert.match(call.id, /^call_[A-Za-z0-9]{24}$/);
  assert.equal(call.type, "function");
  assert.equal(call.function.name, "get_weather");
  assert.deepEqual(JSON.parse(call.function.arguments), { location: "Paris" });

  const s = await collect(await chat("SCRIPT:tool weather in Paris?", { tools, stream: true }));
  assert.equal(s.finish, "tool_calls");
  assert.equal(s.tools.length, 1);
  assert.equal(s.tools[0].name, "get_weather");
  assert.match(s.tools[0].id, /^call_/);
  assert.equal(s.tools[0].arguments, call.function.arguments);
  assert.equal(s.content, "");

  // Multi-turn: the assistant's call and the tool's result go back; the model answers.
  const r2 = await client.chat.completions.create({
    model: "scripted", tools,
    messages: [
      { role: "user", content: "SCRIPT:tool weather in Paris?" },
      { role: "assistant", content: null, reasoning_content: m.reasoning_content, tool_calls: m.tool_calls },
      { role: "tool", tool_call_id: call.id, content: JSON.stringify({ sunny: true }) },
    ],
  });
  assert.equal(r2.choices[0].message.content, "It is sunny in Paris.");
  assert.equal(r2.choices[0].finish_reason, "stop");
});

test("chat: a preamble is content, followed by the call", async () => {
  const r = await chat("SCRIPT:preamble weather?", { tools });
  assert.equal(r.choices[0].message.content, "Let me check.");
  assert.equal(r.choices[0].message.tool_calls[0].function.name, "get_weather");
  assert.equal(r.choices[0].finish_reason, "tool_calls");
});

test("chat: output that is not harmony is a 200 with what was generated", async () => {
  const r = await chat("SCRIPT:broken hi");
  assert.equal(r.choices[0].message.reasoning_content, "Thinking.");
  assert.equal(r.choices[0].message.content, "not harmony at all");
  assert.equal(r.choices[0].finish_reason, "stop");
  const s = await collect(await chat("SCRIPT:broken hi", { stream: true }));
  assert.equal(s.content, "not harmony at all");
});

test("chat: stop strings and max_tokens give honest finish reasons", async () => {
  let r = await chat("SCRIPT:count", { stop: ["five", "nine"] });
  assert.equal(r.choices[0].message.content, "one two three four ");
  assert.equal(r.choices[0].finish_reason, "stop");
  const s = await collect(await chat("SCRIPT:count", { stop: "five", stream: true }));
  assert.equal(s.content, "one two three four ");
  assert.equal(s.finish, "stop");
  r = await chat("SCRIPT:count", { max_tokens: 6 });
  assert.equal(r.choices[0].finish_reason, "length");
  assert.equal(r.usage.completion_tokens, 6);
  r = await chat("SCRIPT:count", { max_completion_tokens: 6 });
  assert.equal(r.usage.completion_tokens, 6);
});

test("completions: raw text, whole and streamed, equal", async () => {
  const a = await client.completions.create({ model: "scripted", prompt: "Hello world", max_tokens: 12, temperature: 0 });
  assert.equal(a.object, "text_completion");
  assert.equal(a.choices[0].finish_reason, "length");
  assert.equal(a.usage.completion_tokens, 12);
  assert.ok(a.choices[0].text.length > 0);
  const stream = await client.completions.create({
    model: "scripted", prompt: "Hello world", max_tokens: 12, temperature: 0, stream: true,
    stream_options: { include_usage: true },
  });
  let text = "", finish = null, usage = null;
  for await (const c of stream) {
    if (c.usage) usage = c.usage;
    if (c.choices[0]) {
      text += c.choices[0].text;
      finish = c.choices[0].finish_reason || finish;
    }
  }
  assert.equal(text, a.choices[0].text);
  assert.equal(finish, "length");
  assert.equal(usage.completion_tokens, 12);
});

test("responses: reasoning item, message item, output_text", async () => {
  const r = await client.responses.create({ model: "scripted", input: "SCRIPT:reason 2+2?", reasoning: { effort: "low" } });
  assert.equal(r.object, "response");
  assert.equal(r.status, "completed");
  assert.equal(r.output_text, "2 + 2 = 4.");
  assert.deepEqual(r.output.map((o) => o.type), ["reasoning", "message"]);
  assert.equal(r.output[0].content[0].text, "The user wants 2+2. That is 4.");
  assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens);
});

test("responses: a function call, then its output", async () => {
  const rtools = [{ type: "function", name: "get_weather", description: "Gets the weather.",
                    parameters: { type: "object", properties: { location: { type: "string" } } } }];
  const r = await client.responses.create({ model: "scripted", input: "SCRIPT:tool weather?", tools: rtools });
  const call = r.output.find((o) => o.type === "function_call");
  assert.ok(call, JSON.stringify(r.output));
  assert.equal(call.name, "get_weather");
  assert.deepEqual(JSON.parse(call.arguments), { location: "Paris" });
  const r2 = await client.responses.create({
    model: "scripted", tools: rtools,
    input: [{ role: "user", content: "SCRIPT:tool weather?" }, call,
            { type: "function_call_output", call_id: call.call_id, output: "{\"sunny\":true}" }],
  });
  assert.equal(r2.output_text, "It is sunny in Paris.");
});

test("responses stream: events add up to the response", async () => {
  const stream = await client.responses.create({ model: "scripted", input: "SCRIPT:reason 2+2?", stream: true });
  const types = [];
  let text = "", reasoning = "", done = null, seq = -1;
  for await (const ev of stream) {
    types.push(ev.type);
    assert.equal(ev.sequence_number, seq + 1);
    seq = ev.sequence_number;
    if (ev.type === "response.output_text.delta") text += ev.delta;
    if (ev.type === "response.reasoning_text.delta") reasoning += ev.delta;
    if (ev.type === "response.completed") done = ev.response;
  }
  assert.equal(types[0], "response.created");
  assert.equal(types.at(-1), "response.completed");
  assert.equal(text, "2 + 2 = 4.");
  assert.equal(reasoning, "The user wants 2+2. That is 4.");
  assert.deepEqual(done.output.map((o) => o.type), ["reasoning", "message"]);
});

test("errors: 400 (413 for a body over the limit) with an error object; serving goes on", async () => {
  const cases = [
    () => client.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "x" }] }),
    () => client.chat.completions.create({ model: "scripted", messages: [] }),
    () => client.chat.completions.create({ model: "scripted", messages: [{ role: "user", content: "x" }], temperature: "hot" }),
    () => client.chat.completions.create({ model: "scripted", messages: [{ role: "user", content: "x" }], n: 2 }),
    () => client.chat.completions.create({ model: "scripted", messages: [{ role: "user", content: "x" }], max_tokens: 100000 }),
    () => client.chat.completions.create({ model: "scripted", messages: [{ role: "user", content: "word ".repeat(5000) }] }),
    () => client.completions.create({ model: "scripted", prompt: 42 }),
    () => client.responses.create({ model: "scripted", input: "x", previous_response_id: "resp_1" }),
  ];
  for (const [i, call] of cases.entries()) {
    await assert.rejects(call, (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError, `case ${i}: ${e}`);
      assert.equal(e.status, 400);
      assert.equal(typeof e.error.message, "string");
      return true;
    });
  }
  const auth = { Authorization: "Bearer " + KEY, "Content-Type": "application/json" };
  for (const body of ["{not json", "[1,2,3]", "", "\xff\xfe"]) {
    const r = await fetch(server.url + "/v1/chat/completions", { method: "POST", headers: auth, body });
    assert.equal(r.status, 400, body);
    const j = await r.json();
    assert.equal(j.error.type, "invalid_request_error");
  }
  const r404 = await fetch(server.url + "/v1/nothing", { headers: auth });
  assert.equal(r404.status, 404);
  assert.ok((await r404.json()).error.message.includes("/v1/nothing"));
  // A body over the 8 MiB limit (src/serve/http_server.h): 413 with an error object.
  await assert.rejects(
    chat("x".repeat((8 << 20) + 1)),
    (e) => {
      assert.ok(e instanceof OpenAI.APIError, String(e));
      assert.equal(e.status, 413);
      assert.match(e.error.message, /larger than 8388608 bytes/);
      assert.equal(e.error.type, "invalid_request_error");
      return true;
    });
  const ok = await chat("SCRIPT:reason again");
  assert.equal(ok.choices[0].message.content, "2 + 2 = 4.");
});

test("API key: 401 without it or with a wrong one; /health needs none", async () => {
  const bad = new OpenAI({ baseURL: server.url + "/v1", apiKey: "wrong", maxRetries: 0 });
  await assert.rejects(bad.models.list(), (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  const r = await fetch(server.url + "/v1/models");
  assert.equal(r.status, 401);
  assert.equal((await r.json()).error.code, "invalid_api_key");
  assert.equal((await fetch(server.url + "/health")).status, 200);
});

test("a client that disconnects frees its slot at once, streamed or not", async () => {
  const running = async () => (await metrics(server.url)).gptoss_running_sequences;
  const stream = await chat("SCRIPT:slow", { stream: true });
  for await (const c of stream) {
    if (c.choices[0] && c.choices[0].delta.content) break;  // leaving the loop aborts the request
  }
  let ms = await waitFor(async () => (await running()) === 0, { withinMs: 3000 });
  assert.ok(ms >= 0, "streamed: the slot was not freed within 3 s");
  const ac = new AbortController();
  const pending = fetch(server.url + "/v1/chat/completions", {
    method: "POST", signal: ac.signal,
    headers: { Authorization: "Bearer " + KEY, "Content-Type": "application/json" },
    body: JSON.stringify({ model: "scripted", messages: [{ role: "user", content: "SCRIPT:slow" }] }),
  }).catch(() => null);
  assert.ok(await waitFor(async () => (await running()) === 1, { withinMs: 3000 }) >= 0);
  ac.abort();
  await pending;
  ms = await waitFor(async () => (await running()) === 0, { withinMs: 3000 });
  assert.ok(ms >= 0, "not streamed: the slot was not freed within 3 s");
});

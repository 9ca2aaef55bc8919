// page.test.mjs: the chat page at / in Debian's headless chromium, driven by puppeteer-core as a
// person would: the page names the model, a typed message streams text from the tiny model into
// the conversation, the settings go into the request, Stop ends a long answer and the server frees
// the sequence. Screenshots go to $SCREENSHOT_DIR (page-answer.png, page-stopped.png).
// env: RUN, MODEL, TOKENIZER, CHROMIUM (default /usr/bin/chromium), SCREENSHOT_DIR.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import puppeteer from "puppeteer-core";
import { startServer, stopServer, metrics, waitFor } from "./server.mjs";

let server, browser, page;
const shots = process.env.SCREENSHOT_DIR || ".";
const requests = [];  // bodies of the chat requests the page sent
const outside = [];   // requests to anywhere but the server (there must be none)

before(async () => {
  server = await startServer(process.env.RUN, [process.env.MODEL, "-z", process.env.TOKENIZER, "-m", "serve",
                                               "--port", "0", "-b", "2", "-c", "2048"]);
  browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    // --no-sandbox: CI runs as root, where chromium's sandbox cannot start.
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
  });
  page = await browser.newPage();
  await page.setViewport({ width: 1100, height: 700 });
  page.on("request", (r) => {
    if (r.url().endsWith("/v1/chat/completions")) requests.push(JSON.parse(r.postData()));
  });
  // Nothing may come from anywhere but the server: anything else is blocked and counted.
  await page.setRequestInterception(true);
  page.on("request", (r) => {
    if (r.url().startsWith(server.url)) return r.continue();
    outside.push(r.url());
    return r.abort();
  });
  fs.mkdirSync(shots, { recursive: true });
});

after(async () => {
  if (browser) await browser.close();
  if (!server) return;
  try {
    await stopServer(server);
  } finally {
    if (server.proc.exitCode === null) server.proc.kill("SIGKILL");
  }
});

test("the page loads, names the model, and streams an answer", async () => {
  await page.goto(server.url + "/", { waitUntil: "load" });
  await page.waitForFunction(() => document.getElementById("model").textContent.includes("tiny"), { timeout: 10000 });
  await page.evaluate(() => {
    const set = (id, v) => {
      const el = document.getElementById(id);
      el.value = v;
      el.dispatchEvent(new Event("change"));
    };
    set("temperature", "0");
    set("max-tokens", "24");
    set("effort", "low");
  });
  await page.type("#input", "Hello from the browser");
  await page.click("#send");
  // Text appears while the answer is still streaming (the Stop button is shown meanwhile) ...
  await page.waitForFunction(() => document.querySelector(".msg.assistant .content").textContent.length > 0, { timeout: 30000 });
  // ... and the answer completes with a finish note.
  await page.waitForFunction(() => document.querySelector(".msg.assistant .note").textContent.startsWith("finish:"), { timeout: 30000 });
  await page.screenshot({ path: path.join(shots, "page-answer.png") });
  const note = await page.$eval(".msg.assistant .note", (e) => e.textContent);
  assert.match(note, /^finish: length · 24 tokens$/);
  assert.equal(await page.$eval(".msg.user", (e) => e.textContent), "Hello from the browser");
  // The random model writes no harmony: no reasoning block is shown.
  assert.equal(await page.$eval(".msg.assistant details.reasoning", (e) => e.hidden), true);
  const sent = requests.at(-1);
  assert.equal(sent.stream, true);
  assert.equal(sent.temperature, 0);
  assert.equal(sent.max_tokens, 24);
  assert.equal(sent.reasoning_effort, "low");
  assert.deepEqual(sent.messages, [{ role: "user", content: "Hello from the browser" }]);
  assert.deepEqual(outside, []);
});

test("Stop ends a long answer and frees the sequence", async () => {
  await page.evaluate(() => {
    const el = document.getElementById("max-tokens");
    el.value = "1500";
    el.dispatchEvent(new Event("change"));
  });
  await page.type("#input", "A long one please");
  await page.click("#send");
  await page.waitForFunction(() => document.querySelectorAll(".msg.assistant")[1].querySelector(".content").textContent.length > 0, { timeout: 30000 });
  assert.equal(await page.$eval("#stop", (e) => e.hidden), false);
  await page.click("#stop");
  await page.waitForFunction(() => document.querySelectorAll(".msg.assistant")[1].querySelector(".note").textContent === "stopped", { timeout: 10000 });
  await page.screenshot({ path: path.join(shots, "page-stopped.png") });
  assert.ok(await waitFor(async () => (await metrics(server.url)).gptoss_running_sequences === 0, { withinMs: 3000 }) >= 0);
  // The second request carried the first exchange (multi-turn).
  const sent = requests.at(-1);
  assert.equal(sent.messages.length, 3);
  assert.equal(sent.messages[1].role, "assistant");
});

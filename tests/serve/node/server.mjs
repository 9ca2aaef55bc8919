// server.mjs: starting and stopping a server under test (run -m serve or the scripted server) as
// a child process on a free port; the port comes from its "listening on http://HOST:PORT" line.
import { spawn } from "node:child_process";
import assert from "node:assert/strict";

export async function startServer(cmd, args, { env = {}, timeoutMs = 60000 } = {}) {
  const proc = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "listening" line in ${timeoutMs} ms:\n${stderr}`)), timeoutMs);
    proc.stderr.on("data", (chunk) => {
      stderr += chunk;
      const m = /listening on (http:\/\/[^\s]+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${stderr}`));
    });
  });
  const exited = new Promise((resolve) => proc.on("exit", (code, signal) => resolve({ code, signal })));
  return { proc, url, exited, stderr: () => stderr };
}

// `signal` (SIGTERM unless told; once, or `times`), then the exit status, which must be 0 within
// `withinMs`.
export async function stopServer(server, { times = 1, withinMs = 20000, signal = "SIGTERM" } = {}) {
  for (let i = 0; i < times; i++) {
    server.proc.kill(signal);
    await new Promise((r) => setTimeout(r, 50));
  }
  const t0 = Date.now();
  let timer;
  const res = await Promise.race([
    server.exited,
    new Promise((r) => { timer = setTimeout(() => r({ code: "timeout" }), withinMs); }),
  ]);
  clearTimeout(timer);
  assert.equal(res.code, 0, `server exit ${JSON.stringify(res)} after ${Date.now() - t0} ms:\n${server.stderr()}`);
  return Date.now() - t0;
}

// Prometheus text -> { name or name{labels}: value }.
export async function metrics(url) {
  const text = await (await fetch(url + "/metrics")).text();
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const cut = line.lastIndexOf(" ");
    out[line.slice(0, cut)] = Number(line.slice(cut + 1));
  }
  return out;
}

export async function waitFor(pred, { withinMs = 5000, stepMs = 20 } = {}) {
  const t0 = Date.now();
  for (;;) {
    if (await pred()) return Date.now() - t0;
    if (Date.now() - t0 > withinMs) return -1;
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

// app.js: the chat page's logic. Sends the conversation to POST /v1/chat/completions with
// "stream": true and shows the server-sent deltas as they come: content as text, reasoning in a
// collapsed block, tool calls as their name and arguments. Stop aborts the request (the server
// then frees the sequence at once). Settings (and the API key) are kept in localStorage.
"use strict";

const $ = (id) => document.getElementById(id);
const conversation = [];  // the conversation sent with every request: {role, content}
let model = null;
let controller = null;  // AbortController of the request in flight

const settingIds = ["temperature", "effort", "max-tokens", "system", "api-key"];
for (const id of settingIds) {
  const saved = localStorage.getItem("gptoss." + id);
  if (saved !== null) $(id).value = saved;
  $(id).addEventListener("change", () => localStorage.setItem("gptoss." + id, $(id).value));
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function loadModel() {
  try {
    const r = await fetch("/v1/models", { headers: headers() });
    const j = await r.json();
    if (!r.ok) throw new Error(j.error ? j.error.message : r.statusText);
    model = j.data[0].id;
    $("model").textContent = "model: " + model + " (context " + j.data[0].max_model_len + ")";
  } catch (e) {
    $("model").textContent = "cannot list models: " + e.message;
  }
}

function addMessage(role) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  $("messages").appendChild(div);
  return div;
}

function scrollDown() {
  const m = $("messages");
  m.scrollTop = m.scrollHeight;
}

// The assistant's bubble: a collapsed reasoning block, the text, tool calls, a note.
function assistantView() {
  const div = addMessage("assistant");
  const details = document.createElement("details");
  details.className = "reasoning";
  details.hidden = true;
  details.innerHTML = "<summary>Reasoning</summary><pre></pre>";
  const content = document.createElement("div");
  content.className = "content";
  const note = document.createElement("div");
  note.className = "note";
  div.append(details, content, note);
  return { div, details, reasoning: details.querySelector("pre"), content, note, tools: [] };
}

function setBusy(busy) {
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  $("input").disabled = busy;
}

// Reads "data: ..." events from the response body; calls onEvent(object) for each.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        onEvent(JSON.parse(data));
      }
    }
  }
}

async function send(text) {
  conversation.push({ role: "user", content: text });
  addMessage("user").textContent = text;
  const view = assistantView();
  scrollDown();
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...conversation);
  const body = {
    model: model,
    messages: messages,
    stream: true,
    stream_options: { include_usage: true },
    temperature: Number($("temperature").value),
    reasoning_effort: $("effort").value,
    max_tokens: Number($("max-tokens").value),
  };
  controller = new AbortController();
  setBusy(true);
  let content = "", finish = null, usage = null;
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal,
    });
    if (!r.ok) {
      const j = await r.json().catch(() => ({}));
      throw new Error((j.error && j.error.message) || r.status + " " + r.statusText);
    }
    await readEvents(r, (ev) => {
      if (ev.error) throw new Error(ev.error.message);
      if (ev.usage) usage = ev.usage;
      const choice = ev.choices && ev.choices[0];
      if (!choice) return;
      const d = choice.delta || {};
      if (d.reasoning_content) {
        view.details.hidden = false;
        view.reasoning.textContent += d.reasoning_content;
      }
      if (d.content) {
        content += d.content;
        view.content.textContent = content;
      }
      for (const t of d.tool_calls || []) {
        if (!view.tools[t.index]) {
          const pre = document.createElement("div");
          pre.className = "tool";
          view.div.insertBefore(pre, view.note);
          view.tools[t.index] = { el: pre, name: t.function.name || "", args: "" };
        }
        const tool = view.tools[t.index];
        tool.args += (t.function && t.function.arguments) || "";
        tool.el.textContent = "tool call: " + tool.name + "(" + tool.args + ")";
      }
      if (choice.finish_reason) finish = choice.finish_reason;
      scrollDown();
    });
    let note = "finish: " + (finish || "?");
    if (usage) note += " · " + usage.completion_tokens + " tokens";
    view.note.textContent = note;
  } catch (e) {
    if (e.name === "AbortError") {
      view.note.textContent = "stopped";
    } else {
      view.div.classList.add("error");
      view.note.textContent = "error: " + e.message;
    }
  } finally {
    conversation.push({ role: "assistant", content: content });
    controller = null;
    setBusy(false);
    $("input").focus();
  }
}

$("composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("input").value.trim();
  if (!text || controller) return;
  $("input").value = "";
  send(text);
});
$("input").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) {
    ev.preventDefault();
    $("composer").requestSubmit();
  }
});
$("stop").addEventListener("click", () => controller && controller.abort());
$("new-chat").addEventListener("click", () => {
  if (controller) controller.abort();
  conversation.length = 0;
  $("messages").textContent = "";
});
$("api-key").addEventListener("change", loadModel);
loadModel();

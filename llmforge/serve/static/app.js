// The chat page: one model, or two side by side on the same conversation, answers streamed from
// /v1/chat/completions (server-sent events); a vote on the side-by-side answers goes to /votes.
"use strict";

const $ = (id) => document.getElementById(id);
const panes = [
  { select: $("model-a"), root: $("pane-a"), history: [] },
  { select: $("model-b"), root: $("pane-b"), history: [] },
];
let lastTurn = null;  // {messages, models, answers} of the last side-by-side turn, for the vote

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value || localStorage.getItem("llmforge-key") || "";
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function status(text) { $("status").textContent = text; }

function comparing() { return $("compare").checked; }

function titles() {
  panes.forEach((p) => { p.root.querySelector(".pane-title").textContent = p.select.value; });
  panes[1].root.hidden = !comparing();
  panes[1].select.disabled = !comparing();
}

function reset() {
  panes.forEach((p) => { p.history = []; p.root.querySelector(".log").innerHTML = ""; });
  $("votes").hidden = true;
  lastTurn = null;
  status("");
}

async function loadModels() {
  const response = await fetch("/v1/models", { headers: headers() });
  const body = await response.json();
  if (!response.ok) { status(body.error ? body.error.message : "cannot list models"); return; }
  const names = body.data.map((m) => m.id);
  panes.forEach((p, i) => {
    p.select.innerHTML = "";
    names.forEach((n) => p.select.add(new Option(n, n)));
    p.select.value = names[Math.min(i, names.length - 1)];
  });
  titles();
  status(names.length + " model(s): " + names.join(", "));
}

function addMessage(pane, role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.textContent = text;
  const log = pane.root.querySelector(".log");
  log.appendChild(div);
  log.scrollTop = log.scrollHeight;
  return div;
}

async function streamInto(pane, messages, target) {
  const body = {
    model: pane.select.value, messages, stream: true,
    temperature: parseFloat($("temperature").value) || 0,
    top_p: parseFloat($("top-p").value) || 1,
    max_tokens: parseInt($("max-tokens").value, 10) || 128,
  };
  const response = await fetch("/v1/chat/completions", { method: "POST", headers: headers(),
                                                         body: JSON.stringify(body) });
  if (!response.ok) {
    const error = await response.json().catch(() => ({}));
    throw new Error(error.error ? error.error.message : response.statusText);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut).trim();
      buffer = buffer.slice(cut + 2);
      if (!event.startsWith("data:")) continue;
      const data = event.slice(5).trim();
      if (data === "[DONE]") return text;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      for (const choice of chunk.choices || []) {
        if (choice.delta && choice.delta.content) {
          text += choice.delta.content;
          target.textContent = text;
        }
      }
    }
  }
  return text;
}

async function send(event) {
  event.preventDefault();
  const prompt = $("prompt").value.trim();
  if (!prompt) return;
  $("prompt").value = "";
  $("send").disabled = true;
  $("votes").hidden = true;
  const active = comparing() ? panes : [panes[0]];
  const system = $("system").value.trim();
  status("generating...");
  try {
    const answers = await Promise.all(active.map(async (pane) => {
      pane.history.push({ role: "user", content: prompt });
      addMessage(pane, "user", prompt);
      const target = addMessage(pane, "assistant", "");
      const messages = (system ? [{ role: "system", content: system }] : []).concat(pane.history);
      try {
        const answer = await streamInto(pane, messages, target);
        pane.history.push({ role: "assistant", content: answer });
        return answer;
      } catch (error) {
        target.className = "msg error";
        target.textContent = String(error.message || error);
        pane.history.pop();
        throw error;
      }
    }));
    status("done");
    if (comparing()) {
      lastTurn = { messages: (system ? [{ role: "system", content: system }] : [])
                     .concat(panes[0].history.slice(0, -1)),
                   models: [panes[0].select.value, panes[1].select.value], answers };
      $("votes").hidden = false;
    }
  } catch (error) {
    status("error: " + (error.message || error));
  } finally {
    $("send").disabled = false;
  }
}

async function vote(winner) {
  if (!lastTurn) return;
  const response = await fetch("/votes", { method: "POST", headers: headers(),
                                           body: JSON.stringify({ ...lastTurn, winner }) });
  const body = await response.json();
  status(response.ok ? "vote saved to " + body.file : "vote not saved: " + body.error.message);
  $("votes").hidden = true;
  lastTurn = null;
}

$("ask").addEventListener("submit", send);
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("ask").requestSubmit(); }
});
$("compare").addEventListener("change", () => { titles(); reset(); });
panes.forEach((p) => p.select.addEventListener("change", () => { titles(); reset(); }));
$("reset").addEventListener("click", reset);
$("vote-a").addEventListener("click", () => vote(0));
$("vote-b").addEventListener("click", () => vote(1));
$("api-key").addEventListener("change", () => {
  localStorage.setItem("llmforge-key", $("api-key").value);
  loadModels();
});
loadModels();

// The console's only script (CSP: script-src 'self', nothing inline).
// Copy buttons (a secret, a payload, a curl command), dialogs, the Test button's
// result, live polling, replay progress, Prospektr's defaults. Every page works from the keyboard; without this file the
// forms still submit.
"use strict";

const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
const MAX_POLLS = 300; // bounded: 10 minutes at 2 s
// Outcomes in the delivery log's words (pages.OUTCOME_LABELS; the API keeps the codes).
const OUTCOME_LABELS = { delivered: "delivered", retry: "retrying", give_up: "failed" };

function text(el, value) { el.textContent = value; }

document.addEventListener("click", async (ev) => {
  const copy = ev.target.closest("[data-copy]");
  if (copy) { copyFrom(copy); return; }
  const close = ev.target.closest("[data-close]");
  if (close) { document.querySelector(close.dataset.close).close(); return; }
  const test = ev.target.closest("[data-test]");
  if (test) { runTest(test); }
});

// Copies the value (inputs) or the text (anything else, hidden or not) of the element
// named by data-copy. With data-copied, says what happened in that status element and
// leaves the button's label alone; without, the button itself says "Copied".
async function copyFrom(button) {
  const source = document.querySelector(button.dataset.copy);
  const value = source.value !== undefined ? source.value : source.textContent;
  const status = button.dataset.copied && document.querySelector(button.dataset.copied);
  const say = (words) => { if (status) { text(status, words); } else { text(button, words); } };
  try {
    await navigator.clipboard.writeText(value);
    const done = button.textContent.replace(/^Copy/, "Copied");
    say(status ? done + " (" + value.length + " characters)." : "Copied");
    button.dataset.copiedLength = String(value.length);
  } catch (e) {
    if (source.select) { source.select(); }
    say(status ? "Could not copy: select the text and press Ctrl+C." : "Press Ctrl+C to copy");
  }
}

async function runTest(button) {
  const out = document.getElementById("test-result");
  button.disabled = true;
  text(out, "Sending…");
  try {
    const picked = button.dataset.testType && document.querySelector(button.dataset.testType);
    const resp = await fetch(button.dataset.test, {
      method: "POST", headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin",
      body: new URLSearchParams(picked ? { event_type: picked.value } : {}),
    });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) { text(out, "Not sent: " + (body.error || resp.status)); return; }
    for (let i = 0; i < 60; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      const r = await fetch("/console/api/deliveries/" + encodeURIComponent(body.delivery_id),
        { credentials: "same-origin" });
      if (r.status === 404) { text(out, "Waiting for the attempt… (" + (i + 1) + " s)"); continue; }
      const a = await r.json();
      out.replaceChildren();
      const line = document.createElement("p");
      line.className = a.outcome === "delivered" ? "state ok" : "error-text";
      line.id = "test-status";
      line.textContent = "Status " + (a.status === null ? "none" : a.status) + " · " +
        Math.round(a.duration_ms) + " ms · " + (OUTCOME_LABELS[a.outcome] || a.outcome) +
        (a.error ? " · " + a.error : "");
      const snippet = document.createElement("pre");
      snippet.textContent = a.response_snippet || "(empty response)";
      out.append(line, snippet);
      return;
    }
    text(out, "No attempt after 60 s: look in the delivery log.");
  } finally { button.disabled = false; }
}

function pollLive(box) {
  let polls = 0;
  const tick = async () => {
    if (polls++ > MAX_POLLS * 6) { return; }
    if (!document.hidden) {
      try {
        const r = await fetch("/console/live?fragment=1", { credentials: "same-origin" });
        if (r.ok) { box.innerHTML = await r.text(); }  // server-rendered, autoescaped
      } catch (e) { /* keep the last view; try again */ }
    }
    setTimeout(tick, 2000);
  };
  setTimeout(tick, 2000);
}

function pollReplay(block) {
  const bar = block.querySelector("progress");
  const status = block.querySelector("[role=status]");
  let polls = 0;
  const tick = async () => {
    if (polls++ > MAX_POLLS) { return; }
    const r = await fetch(block.dataset.replay, { credentials: "same-origin" });
    if (r.ok) {
      const s = await r.json();
      // `total` is the count made before the replay began: the bar moves letter by letter.
      const done = s.matched;
      const total = Math.max(1, s.total || 0, s.matched);
      bar.max = total;
      bar.value = s.status === "finished" ? total : done;
      bar.textContent = done;
      text(status, s.status === "running" ? s.status + ": " + done + " of " + total : s.message);
      if (s.status !== "running") {
        block.dataset.finished = "true";
        const cancel = document.getElementById("cancel-form");
        if (cancel) { cancel.hidden = true; }  // nothing left to cancel
        return;
      }
    }
    setTimeout(tick, 500);
  };
  tick();
}

function prospektrDefaults(select) {
  select.addEventListener("change", () => {
    if (select.value !== "prospektr") { return; }
    document.getElementById("body_format").value = "keyed";
    document.getElementById("retry_schedule").value = "none";
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const live = document.querySelector("[data-live]");
  if (live) { pollLive(live); }
  const replay = document.querySelector("[data-replay]");
  if (replay) { pollReplay(replay); }
  const signing = document.querySelector("select[data-defaults=signing]");
  if (signing) { prospektrDefaults(signing); }
  const dialog = document.querySelector("dialog[open]");
  if (dialog) { dialog.close(); dialog.showModal(); }  // modal: focus stays in it
});

// The chat page: sends the user's messages with the chat token and shows the
// conversation's stream. Every text is inserted with textContent, never as HTML.
"use strict";
(function () {
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem("chat-token", fragment.get("token"));
    history.replaceState(null, "", window.location.pathname);
  }
  const token = sessionStorage.getItem("chat-token");
  const list = document.getElementById("messages");
  const status = document.getElementById("status");
  const form = document.getElementById("composer");
  const input = document.getElementById("text");

  function show(kind, text) {
    const item = document.createElement("li");
    item.className = kind;
    item.textContent = text;
    list.appendChild(item);
    list.scrollTop = list.scrollHeight;
    return item;
  }

  function messageId() {
    // crypto.randomUUID needs a secure context (https or localhost).
    if (window.crypto && crypto.randomUUID) { return crypto.randomUUID(); }
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
  }

  if (!token) {
    status.textContent = "no chat token";
    show("note", "Open this page with a chat link (…/chat#token=…).");
    form.hidden = true;
    return;
  }

  const stream = new EventSource("/v1/web/stream?token=" + encodeURIComponent(token));
  stream.addEventListener("open", function () { status.textContent = "connected"; });
  stream.addEventListener("error", function () {
    status.textContent = stream.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…";
  });
  stream.addEventListener("message", function (event) {
    const message = JSON.parse(event.data);
    show("bot", message.text);
  });
  stream.addEventListener("gap", function () {
    show("note", "Some earlier messages could not be loaded.");
  });

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) { return; }
    input.value = "";
    const mine = show("user", text);
    try {
      const answer = await fetch("/v1/web/chat/messages", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token },
        body: JSON.stringify({ text: text, message_id: messageId() }),
      });
      if (!answer.ok) {
        const body = await answer.json().catch(function () { return {}; });
        show("note", "Not sent: " + (body.error || answer.status));
        mine.classList.add("failed");
      }
    } catch (error) {
      show("note", "Not sent: " + error);
    }
  });
})();

// The chat page: shows the conversation so far, sends the user's messages with the chat
// token and shows the conversation's stream: answers as they are written (deltas), each
// replaced by the answer itself when it comes. Every text is inserted with textContent,
// never as HTML.
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
  const typing = document.getElementById("typing");
  const form = document.getElementById("composer");
  const input = document.getElementById("text");

  // An answer being written that hears nothing for this long is marked interrupted.
  const STALLED_MS = 30000;
  // The typing indicator gives up after this long without an answer.
  const TYPING_MS = 60000;

  const previews = new Map(); // stream id -> {item, sequence, timer}
  const answered = new Set(); // stream ids whose answer is shown
  const shownIds = new Set(); // ids of messages shown (history, then the stream)
  let stream = null;
  let kafka = "up";
  let typingTimer = null;

  function show(kind, text, before) {
    const item = document.createElement("li");
    item.className = kind;
    item.textContent = text;
    list.insertBefore(item, before || null);
    list.scrollTop = list.scrollHeight;
    return item;
  }

  function setStatus() {
    if (!stream || stream.readyState === EventSource.CLOSED) {
      status.textContent = "offline";
    } else if (stream.readyState === EventSource.CONNECTING) {
      status.textContent = "reconnecting…";
    } else if (kafka !== "up") {
      status.textContent = "offline";
    } else {
      status.textContent = "connected";
    }
    document.body.classList.toggle("offline", status.textContent !== "connected");
  }

  function startTyping() {
    typing.hidden = false;
    list.appendChild(typing);
    clearTimeout(typingTimer);
    typingTimer = setTimeout(stopTyping, TYPING_MS);
  }

  function stopTyping() {
    typing.hidden = true;
    clearTimeout(typingTimer);
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

  // ------------------------------------------------------------------ answers

  function stalled(streamId) {
    const preview = previews.get(streamId);
    if (preview) { preview.item.classList.add("interrupted"); }
  }

  function onDelta(delta) {
    if (answered.has(delta.stream_id)) { return; }
    let preview = previews.get(delta.stream_id);
    if (delta.interrupted) {
      if (preview) {
        clearTimeout(preview.timer);
        preview.item.remove();
        previews.delete(delta.stream_id);
      }
      return;
    }
    if (!preview) {
      stopTyping();
      preview = { item: show("bot writing", ""), sequence: -1, timer: null };
      previews.set(delta.stream_id, preview);
    }
    if (delta.sequence === 0) {
      preview.item.textContent = ""; // the answer is being written again
    } else if (delta.sequence !== preview.sequence + 1) {
      preview.item.classList.add("gap"); // a delta was lost: the answer fills it in
    }
    preview.sequence = delta.sequence;
    preview.item.textContent += delta.text;
    preview.item.classList.remove("interrupted");
    clearTimeout(preview.timer);
    preview.timer = setTimeout(stalled, STALLED_MS, delta.stream_id);
    list.scrollTop = list.scrollHeight;
  }

  function onMessage(message) {
    if (message.response_id && shownIds.has(message.response_id)) { return; }
    shownIds.add(message.response_id);
    stopTyping();
    const preview = message.stream_id ? previews.get(message.stream_id) : null;
    if (message.stream_id) { answered.add(message.stream_id); }
    if (preview) {
      clearTimeout(preview.timer);
      previews.delete(message.stream_id);
      preview.item.className = "bot";
      preview.item.textContent = message.text;
      list.scrollTop = list.scrollHeight;
      return;
    }
    show("bot", message.text);
  }

  // ------------------------------------------------------------------ the stream

  function connect(lastEventId) {
    let url = "/v1/web/stream?token=" + encodeURIComponent(token);
    if (lastEventId) { url += "&last_event_id=" + encodeURIComponent(lastEventId); }
    stream = new EventSource(url);
    stream.addEventListener("open", setStatus);
    stream.addEventListener("error", setStatus);
    stream.addEventListener("status", function (event) {
      kafka = JSON.parse(event.data).kafka;
      setStatus();
    });
    stream.addEventListener("message", function (event) { onMessage(JSON.parse(event.data)); });
    stream.addEventListener("delta", function (event) { onDelta(JSON.parse(event.data)); });
    stream.addEventListener("gap", function () {
      show("note", "Some earlier messages could not be loaded.");
    });
  }

  async function load() {
    // The conversation so far, then the stream from where it ends.
    try {
      const answer = await fetch("/v1/web/chat/history", {
        headers: { "Authorization": "Bearer " + token },
      });
      if (!answer.ok) { throw new Error("history " + answer.status); }
      const history = await answer.json();
      if (history.truncated) { show("note", "Older messages are not shown."); }
      for (const said of history.messages) {
        if (said.role === "user") {
          show("user", said.text);
        } else {
          shownIds.add(said.id);
          if (said.stream_id) { answered.add(said.stream_id); }
          show("bot", said.text);
        }
      }
      connect(history.last_event_id);
    } catch (error) {
      connect(null); // the new messages at least
    }
  }

  // ------------------------------------------------------------------ sending

  function notSent(mine, text, id, reason) {
    mine.classList.add("failed");
    const note = show("note failed-note", reason + " ");
    const retry = document.createElement("button");
    retry.type = "button";
    retry.className = "retry";
    retry.textContent = "Retry";
    retry.addEventListener("click", function () {
      note.remove();
      mine.classList.remove("failed");
      send(mine, text, id);
    });
    note.appendChild(retry);
  }

  async function send(mine, text, id) {
    let answer;
    try {
      answer = await fetch("/v1/web/chat/messages", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token },
        // The same id on a retry: the gateway takes the message once.
        body: JSON.stringify({ text: text, message_id: id }),
      });
    } catch (error) {
      status.textContent = "offline";
      notSent(mine, text, id, "Not sent: the chat cannot be reached. Check your connection.");
      return;
    }
    if (answer.ok) {
      setStatus();
      startTyping();
      return;
    }
    if (answer.status >= 500 || answer.status === 429) {
      if (answer.status >= 500) {
        status.textContent = "offline"; // until the stream or a retry says otherwise
        document.body.classList.add("offline");
      }
      notSent(mine, text, id,
        "Not sent: the chat is unavailable right now. Please try again in a moment.");
      return;
    }
    const body = await answer.json().catch(function () { return {}; });
    notSent(mine, text, id, "Not sent: " + (body.error || "the message was refused") + ".");
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) { return; }
    input.value = "";
    send(show("user", text, typing.hidden ? null : typing), text, messageId());
  });

  setStatus();
  load();
})();

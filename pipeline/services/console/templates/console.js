// Live pages: on every change the server announces, fetch this page's live fragment
// again (the server renders and escapes it) unless the operator is typing in it or it
// holds a refused form with what they typed; say when the agent refused or ignored an
// operator's action; show or hide the "Kafka unreachable" banner when the server says
// Kafka stopped or started answering.
(function () {
  if (!window.EventSource) return;
  const live = document.getElementById("live");
  const banner = document.getElementById("kafka-banner");
  const notices = document.getElementById("action-notices");
  let pending = false;
  async function refresh() {
    // A form shown again after a refusal keeps what the operator typed: not replaced.
    if (live.dataset.hold) return;
    const active = document.activeElement;
    if (active && live.contains(active) && active.tagName !== "BODY") { pending = true; return; }
    pending = false;
    const answer = await fetch(location.pathname + location.search, {
      headers: { "X-Console-Fragment": "1", "X-Console-Done": live.dataset.done || "" },
      credentials: "same-origin",
    });
    if (answer.ok) live.innerHTML = await answer.text();
  }
  function told(event) {
    if (!notices) return;
    const action = JSON.parse(event.data);
    const line = document.createElement("p");
    line.className = "notice error action-notice";
    line.dataset.action = action.action_id;
    line.textContent = action.what + " in " + action.conversation_id + ": " +
      (event.type === "refused" ? "refused: " : "ignored by the agent: ") + action.reason;
    notices.prepend(line);
  }
  const stream = new EventSource("/stream");
  if (live) {
    stream.addEventListener(live.dataset.on || "changed", refresh);
    live.addEventListener("focusout", () => { if (pending) setTimeout(refresh, 0); });
  }
  stream.addEventListener("refused", told);
  stream.addEventListener("ignored", told);
  stream.addEventListener("kafka", (event) => {
    const kafka = JSON.parse(event.data);
    if (banner) { banner.textContent = kafka.banner; banner.hidden = !kafka.down; }
    document.querySelector("main").classList.toggle("stale", kafka.down);
  });
})();

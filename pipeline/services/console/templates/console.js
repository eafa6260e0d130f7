// Live pages: on every change the server announces, fetch this page's live fragment
// again (the server renders and escapes it) unless the operator is typing in it.
(function () {
  const live = document.getElementById("live");
  if (!live || !window.EventSource) return;
  let pending = false;
  async function refresh() {
    const active = document.activeElement;
    if (active && live.contains(active) && active.tagName !== "BODY") { pending = true; return; }
    pending = false;
    const answer = await fetch(location.pathname + location.search, {
      headers: { "X-Console-Fragment": "1" }, credentials: "same-origin",
    });
    if (answer.ok) live.innerHTML = await answer.text();
  }
  const stream = new EventSource("/stream");
  stream.addEventListener("changed", refresh);
  live.addEventListener("focusout", () => { if (pending) setTimeout(refresh, 0); });
})();

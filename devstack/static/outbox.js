// Refresh the inbox list when new mail arrives: poll a tiny JSON endpoint, and only when it
// changed fetch the server-rendered (escaped) list and swap it in.
(() => {
  "use strict";
  const section = document.getElementById("messages");
  if (!section) return;
  const marker = () => section.querySelector("[data-count]");
  const baseTitle = document.title;
  let seen = marker() ? marker().dataset.count : "0";
  let fresh = 0;

  async function poll() {
    try {
      const state = await (await fetch("/api/state", { cache: "no-store" })).json();
      const current = marker();
      if (!current || String(state.count) !== current.dataset.count ||
          (state.latest || "") !== current.dataset.latest) {
        const response = await fetch("/fragments/list", { cache: "no-store" });
        if (response.ok) {
          section.innerHTML = await response.text();
          const added = state.count - Number(seen);
          seen = String(state.count);
          if (document.hidden && added > 0) fresh += added;
          document.title = fresh ? `(${fresh}) ${baseTitle}` : baseTitle;
        }
      }
    } catch (err) {
      // The stack is stopping or restarting: keep polling quietly.
    }
    window.setTimeout(poll, 1000);
  }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) { fresh = 0; document.title = baseTitle; }
  });
  window.setTimeout(poll, 1000);
})();

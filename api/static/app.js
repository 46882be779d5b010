// Pat's web UI: live list, message tabs, deletes. Plain script, no build step.
// Every piece of message data on the page comes from server-rendered, autoescaped templates;
// this script only swaps in those fragments and sets text with textContent.
"use strict";

(function () {
  const live = document.getElementById("live");

  function setLive(state, text) {
    live.dataset.state = state;
    live.querySelector(".live-text").textContent = text;
  }

  function localTimes(root) {
    const today = new Date().toDateString();
    for (const el of root.querySelectorAll("time[datetime]")) {
      const when = new Date(el.getAttribute("datetime"));
      if (Number.isNaN(when.getTime())) continue;
      el.title = when.toString();
      el.textContent = when.toDateString() === today ? when.toLocaleTimeString() : when.toLocaleString();
    }
  }

  // Follows /api/v3/events. "ready" comes once the server's subscription is in place, after
  // every (re)connection: whatever changed while disconnected is caught up then.
  function follow(onReady, onChange) {
    const source = new EventSource("/api/v3/events");
    source.addEventListener("ready", () => {
      setLive("live", "live");
      onReady();
    });
    source.addEventListener("message", (event) => {
      let change;
      try {
        change = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      onChange(change);
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        // The browser gives up on a refused stream: try again ourselves.
        setLive("offline", "offline");
        setTimeout(() => follow(onReady, onChange), 5000);
      } else {
        setLive("connecting", "reconnecting");
      }
    });
  }

  async function send(method, url) {
    const response = await fetch(url, { method });
    if (!response.ok && response.status !== 404) {
      let reason = response.statusText;
      try {
        reason = (await response.json()).detail || reason;
      } catch (_) { /* not JSON: keep the status text */ }
      alert(`Pat could not do that (${response.status}): ${reason}`);
      return false;
    }
    return true;
  }

  function listPage() {
    const list = document.getElementById("message-list");
    let timer = null;
    let inFlight = false;
    let again = false;

    function updateTitle() {
      const total = Number(list.querySelector("#total")?.dataset.total || 0);
      document.title = (total ? `(${total}) ` : "") + "Inbox · Pat";
    }

    async function refresh() {
      if (inFlight) {
        again = true;
        return;
      }
      inFlight = true;
      try {
        const before = new Set(Array.from(list.querySelectorAll(".message"), (li) => li.dataset.id));
        const response = await fetch(list.dataset.fragment, { cache: "no-store" });
        if (!response.ok) return;
        const fragment = document.createElement("template");
        fragment.innerHTML = await response.text(); // rendered by Jinja: message fields escaped
        for (const li of fragment.content.querySelectorAll(".message")) {
          if (!before.has(li.dataset.id)) li.classList.add("fresh");
        }
        localTimes(fragment.content);
        list.replaceChildren(fragment.content);
        updateTitle();
      } catch (_) {
        setLive("connecting", "reconnecting");
      } finally {
        inFlight = false;
        if (again) {
          again = false;
          schedule();
        }
      }
    }

    // Bursts of events (a load test sends hundreds a second) become one refresh.
    function schedule() {
      if (timer === null) {
        timer = setTimeout(() => {
          timer = null;
          refresh();
        }, 150);
      }
    }

    document.getElementById("delete-all").addEventListener("click", async () => {
      const total = Number(list.querySelector("#total")?.dataset.total || 0);
      if (!total || !confirm(`Delete all ${total} messages?`)) return;
      if (await send("DELETE", "/api/v3/messages")) refresh();
    });

    localTimes(list);
    updateTitle();
    follow(refresh, schedule);
  }

  function messagePage() {
    const view = document.getElementById("message");
    const id = view.dataset.id;
    const badge = document.getElementById("message-status");
    const renderedStatus = view.dataset.status;

    const tabs = Array.from(document.querySelectorAll(".tabs [data-tab]"));
    let rawLoaded = false;
    function show(name) {
      for (const tab of tabs) tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
      for (const panel of document.querySelectorAll("[data-panel]")) panel.hidden = panel.dataset.panel !== name;
      if (name === "raw" && !rawLoaded) {
        rawLoaded = true;
        const target = document.getElementById("raw-source");
        fetch(view.dataset.rawUrl)
          .then((response) => (response.ok ? response.text() : Promise.reject(new Error(response.statusText))))
          .then((text) => { target.textContent = text; })
          .catch((error) => {
            rawLoaded = false;
            target.textContent = `The raw source could not be loaded: ${error.message}`;
          });
      }
    }
    for (const tab of tabs) tab.addEventListener("click", () => show(tab.dataset.tab));

    const frame = document.getElementById("body-frame");
    const remote = document.getElementById("remote-toggle");
    if (frame && remote) {
      const base = frame.getAttribute("src");
      remote.addEventListener("change", () => {
        frame.src = remote.checked ? `${base}?remote=1` : base;
      });
    }

    const reprocess = document.getElementById("reprocess-message");
    reprocess.addEventListener("click", async () => {
      reprocess.disabled = true;
      if (await send("POST", reprocess.dataset.url)) {
        window.location.reload(); // shows the new run; reloads again when it has finished
      } else {
        reprocess.disabled = false;
      }
    });

    const remove = document.getElementById("delete-message");
    remove.addEventListener("click", async () => {
      remove.disabled = true;
      if (await send("DELETE", remove.dataset.url)) {
        window.location.assign("/");
      } else {
        remove.disabled = false;
      }
    });

    localTimes(view);
    follow(() => {}, (change) => {
      if (change.id !== id) return;
      if (change.kind === "deleted") {
        document.getElementById("deleted-banner").hidden = false;
        remove.disabled = true;
        reprocess.disabled = true;
        return;
      }
      if (!change.status || change.status === badge.textContent) return;
      if (renderedStatus === "received") {
        window.location.reload(); // the parsed view (bodies, parts, headers) is now there
        return;
      }
      badge.textContent = change.status;
      badge.className = `badge status-${change.status}`;
    });
  }

  if (document.body.dataset.page === "list") listPage();
  if (document.body.dataset.page === "message") messagePage();
})();

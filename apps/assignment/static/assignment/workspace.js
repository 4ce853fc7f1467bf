// The agent workspace: state arrives over the websocket (every tab of the agent gets every
// change); while the socket is down the page short-polls with its token and ETag. Actions are
// HTTP calls; a conflict (answered in another tab) only refreshes the state. All user text is
// set with textContent, never parsed as HTML.
(function () {
  "use strict";
  const cfg = JSON.parse(document.getElementById("workspace-config").textContent);
  const root = document.getElementById("workspace");
  const params = new URLSearchParams(window.location.search);
  // ?transport=poll keeps the socket closed: the fallback on demand (support, tests).
  const socketAllowed = params.get("transport") !== "poll";
  let version = null;
  let socket = null;
  let socketOpen = false;
  let pollTimer = null;
  let pollPausedUntil = 0;
  let retryMs = 1000;
  let firstMessage = false;
  const shownAt = {};

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function say(text) { document.getElementById("workspace-message").textContent = text || ""; }

  function setTransport(name, text) {
    root.dataset.transport = name;
    document.getElementById("workspace-status").textContent = text;
  }

  function caseUrl(id) { return cfg.urls.case.replace(cfg.case_placeholder, encodeURIComponent(id)); }

  function openCase(id) {
    const pane = document.getElementById("case-pane");
    pane.dataset.case = id;
    pane.src = caseUrl(id);
  }

  function offerUrl(kind, id) { return cfg.urls[kind].replace("/0/", "/" + encodeURIComponent(id) + "/"); }

  function renderOffers(offers) {
    const box = document.getElementById("offers");
    const keep = new Set(offers.map((o) => String(o.id)));
    box.querySelectorAll(".offer").forEach((node) => { if (!keep.has(node.dataset.offer)) node.remove(); });
    offers.forEach((offer) => {
      // Keyed by offer id: a repeated state never shows the same case twice.
      if (box.querySelector(`.offer[data-offer="${CSS.escape(String(offer.id))}"]`)) return;
      const row = el("div", {"class": "offer", "data-offer": String(offer.id), "data-case": offer.case});
      row.appendChild(el("span", {"class": "subject"}, offer.subject || "(no subject)"));
      row.appendChild(el("span", {"class": "meta"},
        `${offer.queue} · priority ${offer.priority} · ${offer.channel} · answer by ` +
        new Date(offer.expires_at).toLocaleTimeString()));
      const actions = el("div", {});
      const accept = el("button", {"type": "button", "class": "default offer-accept"}, "Accept");
      const decline = el("button", {"type": "button", "class": "offer-decline"}, "Decline");
      accept.addEventListener("click", () => answer(offer, "accept", row));
      decline.addEventListener("click", () => answer(offer, "decline", row));
      actions.append(accept, " ", decline);
      row.appendChild(actions);
      shownAt[offer.id] = shownAt[offer.id] || Date.now();
      row.dataset.shownAt = String(shownAt[offer.id]);
      box.appendChild(row);
    });
    document.getElementById("popup").hidden = offers.length === 0;
  }

  function renderCases(cases) {
    const list = document.getElementById("cases");
    list.replaceChildren();
    cases.forEach((c) => {
      const link = el("a", {"href": caseUrl(c.id), "data-case": c.id}, c.subject || "(no subject)");
      link.addEventListener("click", (event) => { event.preventDefault(); openCase(c.id); });
      const item = el("li", {});
      item.append(link, ` (${c.status}, ${c.queue})`);
      list.appendChild(item);
    });
    document.getElementById("cases-empty").hidden = cases.length > 0;
  }

  function apply(state, force) {
    if (!state || state.version === undefined) return;
    // Pushes from several processes may arrive out of order: never go back to an older state.
    if (!force && version !== null && state.version <= version) return;
    version = state.version;
    root.dataset.version = String(version);
    document.getElementById("presence-state").textContent = state.agent.presence;
    renderOffers(state.offers || []);
    renderCases(state.cases || []);
    // A polling tab learns of an answered call from the state; a live one by its own message.
    if (state.screen_pop) screenPop(state.screen_pop);
  }

  function screenPop(pop) {
    // An answered phone call: its case replaces whatever the pane showed, once per call.
    const key = String(pop.call_id || pop.id);
    if (root.dataset.screenPop === key) return;
    openCase(pop.id);
    root.dataset.screenPop = key;
    say("Call from " + (pop.caller || "a withheld number") + ": " + (pop.subject || pop.id));
  }

  async function call(url, body) {
    const init = {method: "POST", credentials: "same-origin",
                  headers: {"X-CSRFToken": cfg.csrf, "Accept": "application/json"}};
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return {status: response.status, data: data};
  }

  async function answer(offer, kind, row) {
    row.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    const result = await call(offerUrl(kind, offer.id));
    if (result.status === 200) {
      if (kind === "accept") openCase(offer.case);
      say(kind === "accept" ? "The case is yours." : "Declined: the case goes to someone else.");
    } else {
      // Answered in another tab, expired or withdrawn: show what is true now.
      say((result.data && result.data.detail) || "That offer is no longer open.");
    }
    row.remove();
    if (!document.querySelector("#offers .offer")) document.getElementById("popup").hidden = true;
    refresh();
  }

  async function refresh() {
    if (!socketOpen) return pollOnce(true);
  }

  async function pollOnce(force) {
    if (Date.now() < pollPausedUntil) return;
    const headers = {"X-Poll-Token": cfg.poll_token, "Accept": "application/json"};
    if (version !== null && !force) headers["If-None-Match"] = `"${version}"`;
    let response;
    try {
      response = await fetch(cfg.urls.state, {headers: headers, credentials: "omit", cache: "no-store"});
    } catch (e) {
      return;
    }
    if (response.status === 200) {
      apply(await response.json(), force);
    } else if (response.status === 429 || response.status === 503) {
      pollPausedUntil = Date.now() + 1000 * Number(response.headers.get("Retry-After") || 1);
    } else if (response.status === 401) {
      stopPolling();
      setTransport("expired", "Session for live updates expired: reload the page.");
    }
  }

  function startPolling() {
    if (pollTimer !== null) return;
    setTransport("polling", "Live updates by polling (every " + cfg.poll_ms / 1000 + " s).");
    pollOnce(false);
    pollTimer = window.setInterval(() => pollOnce(false), cfg.poll_ms);
  }

  function stopPolling() {
    if (pollTimer !== null) window.clearInterval(pollTimer);
    pollTimer = null;
  }

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + window.location.host + cfg.urls.socket);
    socket.addEventListener("open", () => {
      socketOpen = true;
      firstMessage = true;
      retryMs = 1000;
      stopPolling();
      setTransport("live", "Live.");
    });
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "state") {
        // The first state after (re)connecting is the truth, whatever version the tab held.
        apply(message.state, firstMessage);
        firstMessage = false;
      } else if (message.type === "screen_pop") {
        screenPop(message.case);
      }
    });
    socket.addEventListener("close", (event) => {
      socketOpen = false;
      startPolling();
      if (event.code === 4401 || event.code === 4403) return;  // refused: polling it is
      window.setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    });
  }

  document.querySelectorAll("[data-presence]").forEach((button) => {
    button.addEventListener("click", async () => {
      const result = await call(cfg.urls.presence, {presence: button.dataset.presence});
      if (result.status === 200) {
        document.getElementById("presence-state").textContent = result.data.presence;
        refresh();
      } else {
        say((result.data && result.data.detail) || "Could not change presence.");
      }
    });
  });

  document.getElementById("next-case").addEventListener("click", async () => {
    const result = await call(cfg.urls.next_case);
    if (result.status === 200) {
      openCase(result.data.id);
      say("Your next case.");
    } else if (result.status === 204) {
      say("Nothing waiting fits you right now.");
    } else {
      say((result.data && result.data.detail) || "Could not take a case.");
    }
    refresh();
  });

  // The heartbeat keeps an available agent routable while the page is open.
  window.setInterval(() => { call(cfg.urls.heartbeat); }, cfg.heartbeat_ms);
  window.setInterval(() => {
    if (socketOpen) socket.send(JSON.stringify({type: "ping"}));
  }, 25000);

  apply(cfg.state, true);
  if (socketAllowed && "WebSocket" in window) connect(); else startPolling();
}());

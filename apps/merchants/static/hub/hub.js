// The Support Hub page: lists the merchant's cases, shows a thread (each message's latest reply in
// a sandboxed srcdoc iframe), marks what was read, sends replies and opens cases through the hub
// API with the session cookie and the CSRF token. Text is only ever set as textContent.
(function () {
  "use strict";

  const root = document.getElementById("hub");
  if (!root) return;
  const API = root.dataset.api;
  const CSRF = root.dataset.csrf;
  const $ = (id) => document.getElementById(id);
  const state = { page: 1, filters: {}, caseId: null, messages: [], full: false, fullDocs: null };

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : "";
  }

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.detail) || `Request failed (${status}).`);
      this.status = status;
      this.body = body || {};
    }
  }

  async function api(path, options) {
    const init = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
    init.headers = Object.assign({ Accept: "application/json" }, init.headers);
    if (init.method && init.method !== "GET") {
      init.headers["X-CSRFToken"] = CSRF;
      // A retried send (double click, flaky network) creates the message once.
      if (init.idempotent) init.headers["Idempotency-Key"] = init.idempotent;
    }
    const response = await fetch(API + path, init);
    if (response.status === 401 || response.status === 403) {
      window.location.assign("/hub/login/?next=/hub/");
      throw new ApiError(response.status, null);
    }
    const body = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  function newKey() {
    return window.crypto && crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random();
  }

  function showErrors(form, error) {
    const list = form.querySelector("[data-errors]");
    list.replaceChildren();
    if (!error) return;
    const messages = [];
    const fields = (error.body && (error.body.errors || error.body)) || {};
    for (const [field, value] of Object.entries(fields)) {
      if (field === "detail" || field === "code") continue;
      for (const message of [].concat(value)) messages.push(`${field}: ${message}`);
    }
    if (!messages.length) messages.push(error.message);
    for (const message of messages) list.append(el("li", {}, message));
  }

  // Case list ------------------------------------------------------------------------------

  function badge(count) {
    const node = el("span", { class: "badge", "data-unread": String(count) }, count);
    node.hidden = count === 0;
    node.setAttribute("aria-label", `${count} unread`);
    return node;
  }

  async function loadCases() {
    const params = new URLSearchParams({ page: String(state.page), page_size: "20" });
    for (const [name, value] of Object.entries(state.filters)) if (value) params.set(name, value);
    const data = await api(`cases/?${params}`);
    const list = $("case-list");
    list.replaceChildren();
    for (const item of data.results) {
      const entry = el("li", { class: "case", "data-case": item.id });
      if (item.id === state.caseId) entry.classList.add("current");
      const button = el("button", { type: "button" });
      button.append(el("span", { class: "subject" }, item.subject || "(no subject)"), badge(item.unread_count),
        el("span", { class: "meta" }, `${item.status.replace("_", " ")} · ${when(item.last_activity_at)}`));
      button.addEventListener("click", () => openCase(item.id));
      entry.append(button);
      list.append(entry);
    }
    if (!data.results.length) list.append(el("li", { class: "muted" }, "No cases."));
    $("prev-page").disabled = !data.previous;
    $("next-page").disabled = !data.next;
  }

  function setBadge(caseId, count) {
    const entry = document.querySelector(`li.case[data-case="${CSS.escape(caseId)}"] .badge`);
    if (!entry) return;
    entry.textContent = String(count);
    entry.dataset.unread = String(count);
    entry.setAttribute("aria-label", `${count} unread`);
    entry.hidden = count === 0;
  }

  // Thread ---------------------------------------------------------------------------------

  async function fetchThread(caseId, full) {
    const messages = [];
    let page = 1;
    for (;;) {
      const data = await api(`cases/${caseId}/messages/?page=${page}${full ? "&full=1" : ""}`);
      messages.push(...data.results);
      if (!data.next) return messages;
      page += 1;
    }
  }

  function renderMessage(message) {
    const item = el("li", { class: `message ${message.direction}`, "data-message": String(message.id) });
    const head = el("div", { class: "head" });
    head.append(el("strong", { class: "sender" }, message.sender), el("span", { class: "muted" }, when(message.sent_at)));
    if (!message.is_read) head.append(el("span", { class: "new" }, "new"));
    const frame = el("iframe", { sandbox: "", title: `Message from ${message.sender}`, referrerpolicy: "no-referrer" });
    frame.srcdoc = state.full && state.fullDocs ? state.fullDocs.get(message.id) || message.html_document : message.html_document;
    item.append(head, frame);
    if (message.attachments.length) {
      const files = el("ul", { class: "attachments" });
      for (const file of message.attachments) {
        const link = el("a", { download: "" }, `${file.filename} (${file.size} bytes)`);
        if (String(file.download_url).startsWith(`${API}attachments/`)) link.href = file.download_url;
        const entry = el("li");
        entry.append(link);
        files.append(entry);
      }
      item.append(files);
    }
    return item;
  }

  function renderThread() {
    const list = $("messages");
    list.replaceChildren(...state.messages.map(renderMessage));
    const quoted = state.messages.some((m) => m.has_quoted_history);
    $("toggle-history").hidden = !quoted;
    $("toggle-history").textContent = state.full ? "Hide quoted history" : "Show quoted history";
  }

  async function markRead(caseId) {
    const last = state.messages.length ? state.messages[state.messages.length - 1].id : null;
    const body = last ? { up_to: last } : {};
    const result = await api(`cases/${caseId}/read/`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    setBadge(caseId, result.unread_count);
  }

  async function openCase(caseId) {
    state.caseId = caseId;
    state.full = false;
    state.fullDocs = null;
    $("new-case").hidden = true;
    $("placeholder").hidden = true;
    for (const node of document.querySelectorAll("li.case")) node.classList.toggle("current", node.dataset.case === caseId);
    const [detail, messages] = await Promise.all([api(`cases/${caseId}/`), fetchThread(caseId, false)]);
    $("case-subject").textContent = detail.subject || "(no subject)";
    $("case-status").textContent = detail.status.replace("_", " ");
    $("case-created").textContent = when(detail.created_at);
    state.messages = messages;
    renderThread();
    showErrors($("reply"), null);
    $("case-view").hidden = false;
    await markRead(caseId);
  }

  async function toggleHistory() {
    if (!state.full && !state.fullDocs) {
      const full = await fetchThread(state.caseId, true);
      state.fullDocs = new Map(full.map((m) => [m.id, m.html_document]));
    }
    state.full = !state.full;
    renderThread();
  }

  // Writing --------------------------------------------------------------------------------

  function formData(form) {
    const data = new FormData();
    for (const field of form.querySelectorAll("input[name], textarea[name]")) {
      if (field.type === "file") for (const file of field.files) data.append(field.name, file, file.name);
      else data.append(field.name, field.value);
    }
    return data;
  }

  async function submit(form, path, onDone) {
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    if (!form.dataset.key) form.dataset.key = newKey();
    try {
      const result = await api(path, { method: "POST", body: formData(form), idempotent: form.dataset.key });
      form.reset();
      delete form.dataset.key;
      showErrors(form, null);
      await onDone(result);
    } catch (error) {
      delete form.dataset.key;  // the request was refused: a corrected one is a new request
      showErrors(form, error);
    } finally {
      button.disabled = false;
    }
  }

  $("reply").addEventListener("submit", (event) => {
    event.preventDefault();
    const caseId = state.caseId;
    submit(event.target, `cases/${caseId}/messages/`, async (message) => {
      state.messages.push(message);
      state.fullDocs = null;
      state.full = false;
      renderThread();
      await markRead(caseId);
      await loadCases();
    });
  });

  $("new-case").addEventListener("submit", (event) => {
    event.preventDefault();
    submit(event.target, "cases/", async (created) => {
      state.page = 1;
      await loadCases();
      await openCase(created.id);
    });
  });

  $("new-case-button").addEventListener("click", () => {
    $("case-view").hidden = true;
    $("placeholder").hidden = true;
    $("new-case").hidden = false;
    $("new-subject").focus();
  });

  $("toggle-history").addEventListener("click", () => toggleHistory());

  $("case-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    state.filters = { search: form.elements.search.value.trim(), status: form.elements.status.value };
    state.page = 1;
    loadCases();
  });
  $("prev-page").addEventListener("click", () => { state.page -= 1; loadCases(); });
  $("next-page").addEventListener("click", () => { state.page += 1; loadCases(); });

  loadCases();
})();

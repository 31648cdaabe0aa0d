/* tenex chat: the pages' behaviour. Plain JS, no build step, nothing fetched but our own API.
 *
 * Every write goes through the JSON API (/api/v1/chat) with the session cookie and the CSRF token.
 * A reply streams as Server-Sent Events read from the fetch response body; when the connection
 * drops, the reply is picked up again from the stream endpoint with Last-Event-ID, so no word is
 * lost or shown twice.
 */
(function () {
  "use strict";

  const API = "/api/v1/chat";
  const MAX_RECONNECTS = 8;
  const STATUS_LABELS = { streaming: "Replying…", cancelled: "Stopped", failed: "Failed", interrupted: "Interrupted" };

  // --- small helpers -----------------------------------------------------------------------
  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /** An Idempotency-Key: random, and available outside secure contexts too. */
  function newIdempotencyKey() {
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  class ApiError extends Error {
    constructor(status, body) {
      const error = body && body.error;
      let message = error ? error.message : "Request failed (" + status + ").";
      if (error && error.fields) {
        message += " " + Object.entries(error.fields).map(([name, msgs]) => name + ": " + msgs.join(" ")).join("; ");
      }
      super(message);
      this.status = status;
      this.body = body;
    }

    /** Worth trying again: the server was busy (409 in flight, 429, 5xx). */
    get retryable() {
      return this.status === 409 || this.status === 429 || this.status >= 500;
    }
  }

  async function errorFrom(response) {
    let body = null;
    try {
      body = await response.json();
    } catch (ignored) {
      body = null;
    }
    return new ApiError(response.status, body);
  }

  async function api(method, path, body) {
    const init = {
      method: method,
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await window.fetch(API + path, init);
    if (!response.ok) throw await errorFrom(response);
    return response.status === 204 ? null : response.json();
  }

  let toastTimer = null;
  /** Tell everyone: screen readers through the live region, sighted users through a toast. */
  function announce(text, kind) {
    const announcer = document.getElementById("announcer");
    const toast = document.getElementById("toast");
    if (announcer) announcer.textContent = text;
    if (!toast) return;
    toast.textContent = text;
    toast.dataset.kind = kind || "info";
    toast.hidden = !text;
    clearTimeout(toastTimer);
    if (text) toastTimer = setTimeout(() => { toast.hidden = true; }, kind === "error" ? 8000 : 3000);
  }

  function localizeTimes(root) {
    root.querySelectorAll("time[datetime]").forEach((node) => {
      const date = new Date(node.getAttribute("datetime"));
      if (Number.isNaN(date.getTime())) return;
      node.title = date.toLocaleString();
      node.textContent = node.dataset.style === "short"
        ? date.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" })
        : date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
    });
  }

  // --- Server-Sent Events -----------------------------------------------------------------
  /**
   * An incremental SSE parser: push() text as it arrives, in chunks cut anywhere; onEvent gets
   * {id, event, data} for each complete event. Handles LF, CRLF and CR line ends, multi-line
   * data, and comment lines (": ping"). `retry:` is ignored: reconnects are paced here.
   */
  function createSSEParser(onEvent) {
    let buffer = "";
    let current = { id: null, event: "", data: [] };

    function dispatch() {
      if (current.data.length) {
        onEvent({ id: current.id, event: current.event || "message", data: current.data.join("\n") });
      }
      current = { id: null, event: "", data: [] };
    }

    function processLine(line) {
      if (line === "") return dispatch();
      if (line[0] === ":") return undefined;
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value[0] === " ") value = value.slice(1);
      if (field === "data") current.data.push(value);
      else if (field === "event") current.event = value;
      else if (field === "id" && value.indexOf("\0") === -1) current.id = value;
      return undefined;
    }

    return {
      push(chunk) {
        buffer += chunk;
        let start = 0;
        for (let i = 0; i < buffer.length; i++) {
          const ch = buffer[i];
          if (ch !== "\n" && ch !== "\r") continue;
          if (ch === "\r" && i === buffer.length - 1) break; // maybe CRLF cut in two: wait for more
          processLine(buffer.slice(start, i));
          if (ch === "\r" && buffer[i + 1] === "\n") i++;
          start = i + 1;
        }
        buffer = buffer.slice(start);
      },
    };
  }

  /**
   * Reads an SSE response body; onEvent(parsed data, raw event) returns true on a terminal event.
   * Resolves true when a terminal event arrived, false when the body ended without one; rejects
   * when the connection fails.
   */
  async function readEventStream(response, onEvent) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let finished = false;
    const parser = createSSEParser((raw) => {
      if (finished) return;
      let data;
      try {
        data = JSON.parse(raw.data);
      } catch (ignored) {
        return;
      }
      if (onEvent(data, raw)) finished = true;
    });
    while (!finished) {
      const { done, value } = await reader.read();
      if (done) break;
      parser.push(decoder.decode(value, { stream: true }));
    }
    if (finished) reader.cancel().catch(() => {});
    return finished;
  }

  // --- messages on the page ---------------------------------------------------------------
  class MessageView {
    constructor(node) {
      this.node = node;
      this.content = node.querySelector(".message-content");
    }

    static create(role, content, status) {
      const node = el("li", "message " + role);
      node.dataset.role = role;
      node.dataset.status = status || "complete";
      const head = el("div", "message-head");
      head.append(el("span", "message-author", role === "user" ? "You" : "Assistant"));
      const time = el("time");
      time.setAttribute("datetime", new Date().toISOString());
      head.append(time);
      node.append(head, el("div", "message-content", content || ""));
      localizeTimes(node);
      const view = new MessageView(node);
      view.setStatus(status || "complete");
      return view;
    }

    setId(id) {
      this.node.id = id;
      this.node.dataset.messageId = id;
    }

    setStatus(status) {
      this.node.dataset.status = status;
      this.node.setAttribute("aria-busy", status === "streaming" ? "true" : "false");
      let badge = this.node.querySelector(".message-head .badge.status");
      if (status === "complete") {
        if (badge) badge.remove();
        return;
      }
      if (!badge) {
        badge = el("span", "badge status");
        this.node.querySelector(".message-head").append(badge);
      }
      badge.dataset.status = status;
      badge.textContent = STATUS_LABELS[status] || status;
    }

    appendText(text) {
      this.content.append(document.createTextNode(text));
    }

    setText(text) {
      this.content.textContent = text;
    }

    toolCall(call) {
      let calls = this.node.querySelector(".tool-calls");
      if (!calls) {
        calls = el("div", "tool-calls");
        this.content.before(calls);
      }
      let details = Array.from(calls.children).find((node) => node.dataset.callId === call.id);
      if (!details) {
        details = el("details", "tool-call");
        details.dataset.callId = call.id;
        const summary = el("summary", "", "Tool call ");
        summary.append(el("code", "", call.name), " ", el("span", "tool-status"));
        const body = el("div", "tool-body");
        body.append(el("h3", "", "Arguments"), el("pre", "tool-arguments"), el("h3", "", "Result"), el("pre", "tool-result"));
        details.append(summary, body);
        calls.append(details);
      }
      const status = details.querySelector(".tool-status");
      status.dataset.status = call.status;
      status.textContent = call.status;
      details.querySelector(".tool-arguments").textContent = JSON.stringify(call.arguments, null, 2);
      details.querySelector(".tool-result").textContent = JSON.stringify(call.result === undefined ? null : call.result, null, 2);
    }

    error(message) {
      let node = this.node.querySelector(".message-error");
      if (!node) {
        node = el("p", "message-error");
        this.node.append(node);
      }
      node.textContent = message;
    }

    /** The final message from the server is the truth: its content replaces what streamed. */
    finish(message) {
      if (!message) return;
      this.setId(message.id);
      this.setText(message.content);
      (message.tool_calls || []).forEach((call) => this.toolCall(call));
      if (message.error) this.error(message.error.message);
      this.setStatus(message.status);
    }
  }

  // --- one streamed reply -----------------------------------------------------------------
  /**
   * Follows one assistant reply to its end: from the send request's own stream, then, after a
   * drop, from the stream endpoint with Last-Event-ID (or, when the drop came before the first
   * event, by repeating the send with the same Idempotency-Key, which replays the same reply).
   */
  class Reply {
    constructor(threadId, view, options) {
      this.threadId = threadId;
      this.view = view;
      this.messageId = options.messageId || null;
      this.content = options.content;
      this.idempotencyKey = options.idempotencyKey || null;
      this.lastEventId = 0;
      this.stopRequested = false;
      this.stopSent = false;
      this.reconnects = 0;
    }

    send() {
      return window.fetch(API + "/threads/" + this.threadId + "/messages", {
        method: "POST",
        credentials: "same-origin",
        headers: {
          Accept: "text/event-stream",
          "Content-Type": "application/json",
          "X-CSRFToken": csrfToken(),
          "Idempotency-Key": this.idempotencyKey,
        },
        body: JSON.stringify({ content: this.content }),
      });
    }

    resume() {
      if (!this.messageId) return this.send();
      return window.fetch(API + "/threads/" + this.threadId + "/messages/" + this.messageId + "/stream", {
        credentials: "same-origin",
        headers: { Accept: "text/event-stream", "Last-Event-ID": String(this.lastEventId) },
      });
    }

    /** Handles one event; true when it ends the stream. */
    handle(data) {
      if (data.message_id && !this.messageId) {
        this.messageId = data.message_id;
        this.view.setId(data.message_id);
        if (this.stopRequested) this.stop();
      }
      if (typeof data.seq === "number") {
        if (data.seq <= this.lastEventId) return false; // already shown before a reconnect
        this.lastEventId = data.seq;
      }
      if (data.type === "delta") {
        this.view.appendText(data.delta);
      } else if (data.type === "tool_call" && data.tool_call) {
        this.view.toolCall(data.tool_call);
      } else if (data.type === "done") {
        this.view.finish(data.message);
        return true;
      } else if (data.type === "error") {
        this.view.finish(data.message);
        this.view.setStatus((data.message && data.message.status) || "failed");
        this.view.error((data.error && data.error.message) || "The reply failed.");
        return true;
      }
      return false;
    }

    /** Runs until the reply ends; `first` is the response promise of the send or the resume. */
    async run(first) {
      let pending = first;
      for (;;) {
        try {
          const response = await pending;
          if (response.status === 204) return this.settleFromHistory(); // nothing after our last id
          if (!response.ok) throw await errorFrom(response);
          if (await readEventStream(response, (data) => this.handle(data))) return true;
        } catch (error) {
          if (error instanceof ApiError && !error.retryable) throw error;
        }
        // The connection dropped (or the body ended without `done`): pick the reply up again.
        this.reconnects += 1;
        if (this.reconnects > MAX_RECONNECTS) throw new Error("Lost the connection to the server.");
        announce("Connection lost, reconnecting…");
        await sleep(Math.min(5000, 250 * 2 ** (this.reconnects - 1)));
        pending = this.resume();
      }
    }

    async settleFromHistory() {
      const page = await api("GET", "/threads/" + this.threadId + "/messages?order=desc&limit=10");
      const message = page.results.find((m) => m.id === this.messageId);
      if (message) this.view.finish(message);
      return true;
    }

    async stop() {
      this.stopRequested = true;
      if (!this.messageId || this.stopSent) return;
      this.stopSent = true;
      try {
        // The stream then ends with `done` (status cancelled), which finishes this reply.
        await api("POST", "/threads/" + this.threadId + "/messages/" + this.messageId + "/cancel");
      } catch (error) {
        this.stopSent = false;
        announce("Could not stop the reply: " + error.message, "error");
      }
    }
  }

  // --- the thread page --------------------------------------------------------------------
  function pendingKey(threadId) {
    return "tenex:pending:" + threadId;
  }

  function initThreadPage(page) {
    const threadId = page.dataset.threadId;
    const history = document.getElementById("history");
    const list = document.getElementById("messages");
    const form = document.getElementById("composer");
    const input = document.getElementById("composer-input");
    const sendButton = document.getElementById("send-button");
    const stopButton = document.getElementById("stop-button");
    let active = null;

    function nearBottom() {
      return history.scrollHeight - history.scrollTop - history.clientHeight < 120;
    }

    function scrollToEnd() {
      history.scrollTop = history.scrollHeight;
    }

    // Keep the newest words in view while they arrive, unless the reader scrolled up.
    const keepInView = new MutationObserver(() => {
      if (active && active.follow) scrollToEnd();
    });
    keepInView.observe(list, { childList: true, subtree: true, characterData: true });
    history.addEventListener("scroll", () => {
      if (active) active.follow = nearBottom();
    });

    function setBusy(busy) {
      sendButton.disabled = busy;
      stopButton.hidden = !busy;
      if (!busy && document.activeElement === stopButton) input.focus();
    }

    async function followReply(reply) {
      active = { reply: reply, follow: true };
      setBusy(true);
      scrollToEnd();
      try {
        await reply.run(reply.messageId ? reply.resume() : reply.send());
        announce(reply.view.node.dataset.status === "cancelled" ? "Reply stopped." : "Reply finished.");
      } catch (error) {
        reply.view.setStatus("failed");
        reply.view.error(error.message);
        announce(error.message, "error");
        throw error;
      } finally {
        active = null;
        setBusy(false);
        refreshThread(threadId);
      }
    }

    async function send(content) {
      const empty = document.getElementById("messages-empty");
      if (empty) empty.remove();
      const mine = MessageView.create("user", content);
      const theirs = MessageView.create("assistant", "", "streaming");
      list.append(mine.node, theirs.node);
      const reply = new Reply(threadId, theirs, { content: content, idempotencyKey: newIdempotencyKey() });
      try {
        await followReply(reply);
      } catch (error) {
        if (!reply.messageId && error instanceof ApiError) {
          // Refused before anything was stored: take the bubbles back and give the text back.
          mine.node.remove();
          theirs.node.remove();
          if (!input.value) input.value = content;
        }
      }
    }

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const content = input.value;
      if (!content.trim() || active) return;
      input.value = "";
      send(content);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    stopButton.addEventListener("click", () => {
      if (active) active.reply.stop();
    });

    // A reply still streaming when the page loaded: follow it from its first event.
    const last = list.querySelector("li.message.assistant:last-of-type");
    if (last && last.dataset.status === "streaming") {
      const view = new MessageView(last);
      view.setText("");
      followReply(new Reply(threadId, view, { messageId: last.dataset.messageId })).catch(() => {});
    } else {
      const pending = window.sessionStorage.getItem(pendingKey(threadId));
      if (pending) {
        window.sessionStorage.removeItem(pendingKey(threadId));
        send(pending);
      }
    }
    scrollToEnd();
    input.focus();
  }

  /** After a reply: the thread's (possibly new) title, and its place at the top of the sidebar. */
  async function refreshThread(threadId) {
    let thread;
    try {
      thread = await api("GET", "/threads/" + threadId);
    } catch (ignored) {
      return;
    }
    const title = thread.title || "New thread";
    const heading = document.getElementById("thread-title");
    if (heading) heading.textContent = title;
    document.title = title + " · tenex chat";
    document.querySelectorAll('[data-thread-id="' + threadId + '"]').forEach((node) => {
      node.dataset.title = thread.title;
    });
    let item = document.querySelector('.thread-item[data-thread-id="' + threadId + '"]');
    const recent = document.getElementById("recent-threads");
    if (!item && recent && !thread.archived && !thread.pinned) {
      item = buildThreadItem(thread);
    }
    if (!item) return;
    item.querySelector(".thread-title").textContent = title;
    const menuLabel = item.querySelector(".thread-menu .visually-hidden");
    if (menuLabel) menuLabel.textContent = "Actions for " + title;
    const time = item.querySelector("time");
    time.setAttribute("datetime", thread.last_message_at || thread.created_at);
    localizeTimes(item);
    if (recent && !thread.pinned && !thread.archived) {
      recent.prepend(item);
      const empty = recent.parentElement.querySelector(".list-empty");
      if (empty) empty.remove();
    }
  }

  function buildThreadItem(thread) {
    const item = el("li", "thread-item current");
    item.dataset.threadId = thread.id;
    item.dataset.title = thread.title;
    item.dataset.pinned = String(thread.pinned);
    item.dataset.archived = String(thread.archived);
    const link = el("a", "thread-link");
    link.href = "/chat/" + thread.id;
    link.setAttribute("aria-current", "page");
    const time = el("time", "thread-time");
    time.dataset.style = "short";
    link.append(el("span", "thread-title"), time);
    item.append(link);
    return item;
  }

  // --- the new-thread composer on /chat/ --------------------------------------------------
  function initNewThreadComposer(form) {
    const input = document.getElementById("composer-input");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const content = input.value;
      if (!content.trim()) return;
      form.querySelector("button[type=submit]").disabled = true;
      try {
        const thread = await api("POST", "/threads", {});
        window.sessionStorage.setItem(pendingKey(thread.id), content);
        window.location.assign("/chat/" + thread.id);
      } catch (error) {
        announce(error.message, "error");
        form.querySelector("button[type=submit]").disabled = false;
      }
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    input.focus();
  }

  // --- thread actions (sidebar menu and thread header) ------------------------------------
  function currentThreadId() {
    const page = document.getElementById("thread-page");
    return page ? page.dataset.threadId : null;
  }

  function renameThread(holder) {
    const dialog = document.getElementById("rename-dialog");
    const form = document.getElementById("rename-form");
    const input = document.getElementById("rename-input");
    input.value = holder.dataset.title || "";
    form.onsubmit = async (event) => {
      event.preventDefault();
      const title = input.value;
      if (!title.trim()) {
        input.focus();
        return;
      }
      try {
        await api("PATCH", "/threads/" + holder.dataset.threadId, { title: title });
        dialog.close();
        window.location.reload();
      } catch (error) {
        announce(error.message, "error");
      }
    };
    dialog.querySelector("[data-dialog-cancel]").onclick = () => dialog.close();
    dialog.showModal();
    input.select();
  }

  async function threadAction(action, holder) {
    const threadId = holder.dataset.threadId;
    const title = holder.dataset.title || "New thread";
    if (action === "rename") return renameThread(holder);
    if (action === "pin") {
      await api("PATCH", "/threads/" + threadId, { pinned: holder.dataset.pinned !== "true" });
    } else if (action === "archive") {
      await api("PATCH", "/threads/" + threadId, { archived: holder.dataset.archived !== "true" });
    } else if (action === "delete") {
      if (!window.confirm("Delete “" + title + "”? Its messages, attachments and files are deleted with it.")) return undefined;
      await api("DELETE", "/threads/" + threadId);
      if (threadId === currentThreadId()) {
        window.location.assign("/chat/" + window.location.search);
        return undefined;
      }
    } else {
      return undefined;
    }
    window.location.reload();
    return undefined;
  }

  /** A thread is created by its first message (the composer on /chat/), never empty by this button. */
  function newThread() {
    const starter = document.querySelector("form[data-new-thread]");
    if (starter) {
      setDrawer(false);
      document.getElementById("composer-input").focus();
      return;
    }
    window.location.assign("/chat/");
  }

  // --- the thread list as a drawer on small screens -----------------------------------------
  function setDrawer(open) {
    const app = document.getElementById("app");
    const toggle = document.getElementById("drawer-toggle");
    if (!app || !toggle) return;
    app.classList.toggle("drawer-open", open);
    toggle.setAttribute("aria-expanded", String(open));
    if (open) {
      const first = document.querySelector("#sidebar .thread-link, #sidebar button");
      if (first) first.focus();
    }
  }

  document.addEventListener("click", (event) => {
    const app = document.getElementById("app");
    if (event.target.closest("#drawer-toggle")) {
      setDrawer(!app.classList.contains("drawer-open"));
    } else if (event.target === app && app.classList.contains("drawer-open")) {
      setDrawer(false); // the dimmed page beside the drawer
    }
  });

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-action]");
    if (!button) return;
    const action = button.dataset.action;
    if (action === "new-thread") {
      newThread();
      return;
    }
    const holder = button.closest("[data-thread-id]");
    if (!holder) return;
    const menu = button.closest("details.thread-menu");
    if (menu) menu.open = false;
    threadAction(action, holder).catch((error) => announce(error.message, "error"));
  });

  // Only one open thread menu at a time; Escape closes it.
  document.addEventListener("toggle", (event) => {
    const opened = event.target;
    if (!(opened instanceof HTMLDetailsElement) || !opened.classList.contains("thread-menu") || !opened.open) return;
    document.querySelectorAll("details.thread-menu[open]").forEach((menu) => {
      if (menu !== opened) menu.open = false;
    });
  }, true);
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    const app = document.getElementById("app");
    if (app && app.classList.contains("drawer-open")) {
      setDrawer(false);
      document.getElementById("drawer-toggle").focus();
    }
    document.querySelectorAll("details.thread-menu[open]").forEach((menu) => {
      menu.open = false;
      menu.querySelector("summary").focus();
    });
  });

  function init() {
    localizeTimes(document);
    const page = document.getElementById("thread-page");
    if (page) initThreadPage(page);
    const starter = document.querySelector("form[data-new-thread]");
    if (starter) initNewThreadComposer(starter);
  }

  // For tests and the curious: the pieces that have no page of their own.
  window.TenexChat = { createSSEParser: createSSEParser };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();

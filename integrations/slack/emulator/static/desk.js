/* The emulator desk: polls desk/state, renders it, and turns clicks into desk/* JSON posts.
 *
 * All URLs are relative so the page works at "/" standalone and at "/_slack/" when mounted.
 * Rendering of message content goes through SBBlocks (textContent only, never innerHTML).
 */
"use strict";

(function () {
  const B = window.SBBlocks;
  const POLL_MS = 700;
  const view = { user: "U0ALICE", channel: null, thread: null, revision: null, modalKey: null, home: false, data: null };
  const $ = (id) => document.getElementById(id);

  function setStatus(text) {
    $("status").textContent = text;
  }

  async function post(action, body) {
    const resp = await fetch("desk/" + action, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(Object.assign({ user: view.user }, body)),
    });
    const data = await resp.json().catch(() => ({}));
    setStatus(resp.ok ? action + " → gateway " + (data.status === 0 ? "unreachable" : data.status) : action + " failed: " + (data.error || resp.status));
    await refresh(true);
    return data;
  }

  function userName(id) {
    const u = (view.data ? view.data.users : []).find((x) => x.id === id);
    return u ? u.real_name : id || "unknown";
  }

  function timeOf(ts) {
    const d = new Date(parseFloat(ts) * 1000);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function actionCtx(message, data) {
    return {
      users: data.users,
      onClick: (element, node) => {
        node.disabled = true;
        post("click", { channel: data.channel.id, ts: message.ts, action_id: element.action_id, value: element.value });
      },
      onSelect: (element, value) =>
        post("click", { channel: data.channel.id, ts: message.ts, action_id: element.action_id, selected_option: value }),
    };
  }

  function messageNode(message, data, opts) {
    const node = B.el("article", "message" + (opts.ephemeral ? " ephemeral" : ""));
    node.dataset.ts = message.ts || message.message_ts;
    const head = B.el("div", "message-head");
    const author = message.bot_id || opts.ephemeral ? "Switchboard" : userName(message.user);
    head.appendChild(B.el("span", "author", author));
    if (message.bot_id || opts.ephemeral) head.appendChild(B.el("span", "app-tag", "APP"));
    head.appendChild(B.el("time", "muted", timeOf(node.dataset.ts)));
    if (message.edited) head.appendChild(B.el("span", "muted", "(edited)"));
    if (opts.ephemeral) head.appendChild(B.el("span", "muted only-you", "Only visible to you"));
    node.appendChild(head);
    const blocks = message.blocks && message.blocks.length ? message.blocks : null;
    const ctx = opts.ephemeral
      ? actionCtx({ ts: message.message_ts }, data)
      : actionCtx(message, data);
    node.appendChild(blocks ? B.renderBlocks(blocks, ctx) : B.mrkdwn(message.text));
    if (message.reactions && message.reactions.length) {
      const r = B.el("div", "reactions");
      for (const x of message.reactions) r.appendChild(B.el("span", "reaction", ":" + x.name + ": " + x.count));
      node.appendChild(r);
    }
    if (!opts.inThread && !opts.ephemeral) {
      const label = !message.reply_count ? "Start thread"
        : message.reply_count + (message.reply_count === 1 ? " reply" : " replies");
      const replies = B.el("button", "replies", label);
      replies.type = "button";
      replies.addEventListener("click", () => openThread(message.ts));
      node.appendChild(replies);
    }
    return node;
  }

  function renderSidebar(data) {
    const list = $("channel-list");
    list.replaceChildren();
    for (const c of data.channels) {
      const li = B.el("li");
      const b = B.el("button", "channel" + (c.id === data.channel.id && !view.home ? " active" : ""), "# " + c.name);
      b.type = "button";
      b.dataset.channelId = c.id;
      if (c.unread && c.id !== data.channel.id) {
        const badge = B.el("span", "badge", c.unread);
        badge.setAttribute("aria-label", c.unread + " unread");
        b.appendChild(badge);
      }
      b.addEventListener("click", () => selectChannel(c.id));
      li.appendChild(b);
      list.appendChild(li);
    }
  }

  function renderMessages(data) {
    $("channel-title").textContent = view.home ? "Home" : "# " + data.channel.name;
    const box = $("messages");
    box.hidden = view.home;
    $("home").hidden = !view.home;
    const nodes = data.messages.map((m) => messageNode(m, data, {}));
    for (const e of data.ephemerals.filter((x) => !x.thread_ts)) nodes.push(messageNode(e, data, { ephemeral: true }));
    box.replaceChildren(...nodes);
    box.scrollTop = box.scrollHeight;
    if (view.home) {
      $("home").replaceChildren(data.home ? B.renderBlocks(data.home.blocks, { users: data.users }) : B.el("p", "muted", "No Home tab published yet."));
    }
  }

  function renderThread(data) {
    const panel = $("thread-panel");
    panel.hidden = !data.thread;
    if (!data.thread) return;
    const nodes = data.thread.messages.map((m) => messageNode(m, data, { inThread: true }));
    for (const e of data.ephemerals.filter((x) => x.thread_ts === data.thread.ts)) {
      nodes.push(messageNode(e, data, { ephemeral: true, inThread: true }));
    }
    $("thread-messages").replaceChildren(...nodes);
  }

  function collectValues(modal) {
    const values = {};
    for (const field of modal.querySelectorAll(".input-block")) {
      const control = field.querySelector(".input-control");
      if (!control || control.value === undefined) continue;
      values[field.dataset.blockId] = values[field.dataset.blockId] || {};
      values[field.dataset.blockId][field.dataset.actionId] = control.value;
    }
    return values;
  }

  function renderModal(data) {
    const modalView = data.modal;
    const key = modalView ? modalView.id + modalView.hash + JSON.stringify(modalView.errors) : null;
    if (key === view.modalKey) return;  // never wipe what the user is typing
    view.modalKey = key;
    $("modal-backdrop").hidden = !modalView;
    const box = $("modal");
    if (!modalView) {
      box.dataset.viewId = "";
      box.replaceChildren();
      return;
    }
    const keep = box.dataset.viewId === modalView.id ? collectValues(box) : {};
    box.dataset.viewId = modalView.id;
    const title = B.el("h2", "", B.plain(modalView.title));
    title.id = "modal-title";
    const form = B.el("form", "modal-body");
    form.appendChild(B.renderBlocks(modalView.blocks, { users: data.users, errors: modalView.errors }));
    for (const field of form.querySelectorAll(".input-block")) {
      const prior = (keep[field.dataset.blockId] || {})[field.dataset.actionId];
      const control = field.querySelector(".input-control");
      if (prior !== undefined && control) control.value = prior;
    }
    if (modalView.errors && modalView.errors[""]) {
      const general = B.el("p", "field-error", modalView.errors[""]);
      general.setAttribute("role", "alert");
      form.appendChild(general);
    }
    const buttons = B.el("div", "modal-buttons");
    const cancel = B.el("button", "btn", B.plain(modalView.close) || "Cancel");
    cancel.type = "button";
    cancel.addEventListener("click", () => post("close", { view_id: modalView.id }));
    const submit = B.el("button", "btn primary", B.plain(modalView.submit) || "Submit");
    submit.type = "submit";
    buttons.append(cancel, submit);
    form.appendChild(buttons);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      post("submit", { view_id: modalView.id, values: collectValues(form) });
    });
    box.replaceChildren(title, form);
  }

  function renderUsers(data) {
    const picker = $("user-picker");
    if (picker.options.length) return;
    for (const u of data.users.filter((x) => !x.is_bot)) {
      const o = B.el("option", "", u.real_name + " (@" + u.name + ")");
      o.value = u.id;
      picker.appendChild(o);
    }
    picker.value = view.user;
  }

  function render(data) {
    view.data = data;
    view.channel = data.channel.id;
    B.setUsers(data.users);
    renderUsers(data);
    renderSidebar(data);
    renderMessages(data);
    renderThread(data);
    renderModal(data);
    document.body.dataset.revision = data.revision;
  }

  async function refresh(force) {
    const q = new URLSearchParams({ user: view.user });
    if (view.channel) q.set("channel", view.channel);
    if (view.thread) q.set("thread", view.thread);
    if (!force && view.revision !== null) q.set("since", view.revision);
    try {
      const resp = await fetch("desk/state?" + q.toString(), { cache: "no-store" });
      const data = await resp.json();
      if (!resp.ok || data.unchanged) return;
      view.revision = String(data.revision);
      render(data);
    } catch (err) {
      setStatus("emulator unreachable: " + err);
    }
  }

  function selectChannel(id) {
    view.channel = id;
    view.thread = null;
    view.home = false;
    refresh(true);
  }

  function openThread(ts) {
    view.thread = ts;
    refresh(true).then(() => $("thread-text").focus());
  }

  function bindForms() {
    $("user-picker").addEventListener("change", (ev) => {
      view.user = ev.target.value;
      view.modalKey = undefined;
      refresh(true);
    });
    $("thread-close").addEventListener("click", () => {
      view.thread = null;
      refresh(true);
    });
    $("home-button").addEventListener("click", () => {
      view.home = true;
      post("home", {});
    });
    $("composer").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const text = $("composer-text").value.trim();
      if (!text) return;
      $("composer-text").value = "";
      post("post", { channel: view.channel, text });
    });
    $("thread-composer").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const text = $("thread-text").value.trim();
      if (!text || !view.thread) return;
      $("thread-text").value = "";
      post("post", { channel: view.channel, text, thread_ts: view.thread });
    });
    $("slash-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const raw = $("slash-text").value.trim();
      const match = /^(\/\S+)\s*([\s\S]*)$/.exec(raw);
      if (!match) {
        setStatus("slash commands start with /, e.g. /switchboard help");
        return;
      }
      $("slash-text").value = "";
      post("slash", { channel: view.channel, command: match[1], text: match[2] });
    });
  }

  bindForms();
  refresh(true);
  setInterval(() => refresh(false), POLL_MS);
})();

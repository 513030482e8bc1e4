/* Switchboard web chat widget. Plain JS, no build step.
 * Embed: <script src="https://gateway.example/webchat/widget.js" async
 *          data-title="Support" data-user-id="…" data-user-hash="…" data-email="…" data-name="…"></script>
 * All customer and agent text is rendered with textContent, never as HTML.
 */
(function () {
  "use strict";
  if (window.SwitchboardChat) return;
  var script = document.currentScript || document.querySelector('script[src*="/webchat/widget.js"]');
  var base = new URL(script ? script.src : location.href, location.href);
  var root = base.origin;
  var data = (script && script.dataset) || {};
  var MAX_TEXT = 4000;
  // The resume secret is what brings this browser back to its conversation: it stays in localStorage and goes
  // only into the body of POST /webchat/session, never into a URL. The visitor id kept before it proves nothing
  // any more (it was readable in every socket URL) and is dropped.
  var KEY_RESUME = "sb_webchat_resume", KEY_OUTBOX = "sb_webchat_outbox", KEY_VISITOR = "sb_webchat_visitor";
  // Unsent messages belong to whoever typed them: the signed-in user, or this browser's anonymous visitor (one
  // resume secret per browser). Kept under one key for the browser, they went out as whoever signed in next.
  var KEY_MY_OUTBOX = KEY_OUTBOX + ":" + (data.userId ? "user:" + data.userId : "visitor");

  function store(key, value) {
    try { if (value === undefined) return JSON.parse(localStorage.getItem(key) || "null");
          localStorage.setItem(key, JSON.stringify(value)); } catch (e) { return null; }
  }
  function rid(prefix) {
    var b = new Uint8Array(12); crypto.getRandomValues(b);
    return prefix + Array.prototype.map.call(b, function (x) { return ("0" + x.toString(16)).slice(-2); }).join("");
  }
  function el(tag, attrs, text) {
    var n = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { n.setAttribute(k, attrs[k]); });
    if (text != null) n.textContent = text;
    return n;
  }

  var css = ".sbc-launch{position:fixed;right:16px;bottom:16px;z-index:2147483000;border:0;border-radius:28px;" +
    "padding:14px 20px;background:#1f4fd1;color:#fff;font:600 15px system-ui,sans-serif;cursor:pointer}" +
    ".sbc-launch:focus-visible,.sbc-panel button:focus-visible,.sbc-panel textarea:focus-visible{outline:3px solid #ffbf47;outline-offset:2px}" +
    ".sbc-panel{position:fixed;right:16px;bottom:80px;z-index:2147483000;width:360px;max-width:calc(100vw - 16px);" +
    "height:520px;max-height:calc(100vh - 96px);display:flex;flex-direction:column;background:#fff;color:#1b1b1b;" +
    "border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.25);font:14px/1.4 system-ui,sans-serif;overflow:hidden}" +
    ".sbc-panel[hidden]{display:none}.sbc-head{display:flex;align-items:center;justify-content:space-between;" +
    "padding:12px 14px;background:#1f4fd1;color:#fff}.sbc-head h2{font-size:16px;margin:0}" +
    ".sbc-close{background:transparent;border:0;color:#fff;font-size:22px;cursor:pointer;min-width:44px;min-height:44px}" +
    ".sbc-log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px}" +
    ".sbc-msg{max-width:85%;padding:8px 10px;border-radius:10px;white-space:pre-wrap;overflow-wrap:anywhere}" +
    ".sbc-in{align-self:flex-end;background:#1f4fd1;color:#fff}.sbc-out{align-self:flex-start;background:#eef1f6}" +
    ".sbc-author{display:block;font-size:12px;font-weight:600;margin-bottom:2px}" +
    ".sbc-state{display:block;font-size:11px;opacity:.8}.sbc-failed{background:#b3261e}" +
    ".sbc-note{font-size:12px;color:#555;padding:0 12px;min-height:16px}.sbc-alert{color:#b3261e;font-size:12px;padding:0 12px}" +
    ".sbc-form{display:flex;gap:6px;padding:10px;border-top:1px solid #ddd}.sbc-form textarea{flex:1;resize:none;" +
    "font:inherit;padding:8px;border:1px solid #999;border-radius:8px;min-height:44px}" +
    ".sbc-form button,.sbc-csat button{min-width:44px;min-height:44px;border:0;border-radius:8px;background:#1f4fd1;color:#fff;" +
    "font:600 14px system-ui,sans-serif;cursor:pointer}.sbc-csat{padding:8px 12px;border-top:1px solid #ddd}" +
    ".sbc-csat div{display:flex;gap:6px;margin-top:6px}.sbc-vh{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}" +
    "@media (max-width:480px){.sbc-panel{right:8px;left:8px;width:auto;max-width:none;bottom:72px}}";
  var style = el("style"); style.textContent = css; document.head.appendChild(style);

  var title = data.title || "Support";
  var launch = el("button", { "class": "sbc-launch", type: "button", "aria-haspopup": "dialog",
    "aria-expanded": "false", "aria-controls": "sbc-panel", "aria-label": "Open support chat" }, "Chat with us");
  var panel = el("section", { "class": "sbc-panel", id: "sbc-panel", role: "dialog", "aria-modal": "false",
    "aria-labelledby": "sbc-title" });
  panel.hidden = true;
  var head = el("div", { "class": "sbc-head" });
  head.appendChild(el("h2", { id: "sbc-title" }, title));
  var close = el("button", { "class": "sbc-close", type: "button", "aria-label": "Close chat" }, "\u00d7");
  head.appendChild(close);
  var log = el("div", { "class": "sbc-log", role: "log", "aria-live": "polite", "aria-label": "Conversation", tabindex: "0" });
  var note = el("div", { "class": "sbc-note", "aria-live": "polite" });
  var alertBox = el("div", { "class": "sbc-alert", role: "alert" });
  var csatBox = el("div", { "class": "sbc-csat", role: "group", "aria-label": "Rate this conversation" });
  csatBox.hidden = true;
  var form = el("form", { "class": "sbc-form" });
  var label = el("label", { "for": "sbc-input", "class": "sbc-vh" }, "Your message");
  var input = el("textarea", { id: "sbc-input", rows: "1", maxlength: String(MAX_TEXT), placeholder: "Type a message…" });
  var send = el("button", { type: "submit", "aria-label": "Send message" }, "Send");
  form.appendChild(label); form.appendChild(input); form.appendChild(send);
  [head, log, note, alertBox, csatBox, form].forEach(function (n) { panel.appendChild(n); });

  function mount() { document.body.appendChild(launch); document.body.appendChild(panel); }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);

  function openPanel() {
    panel.hidden = false; launch.setAttribute("aria-expanded", "true"); input.focus(); connect(); wake();
  }
  function closePanel() { panel.hidden = true; launch.setAttribute("aria-expanded", "false"); launch.focus(); }
  launch.addEventListener("click", function () { panel.hidden ? openPanel() : closePanel(); });
  close.addEventListener("click", closePanel);
  panel.addEventListener("keydown", function (e) { if (e.key === "Escape") closePanel(); });

  // ---- state -------------------------------------------------------------------------------------
  var resume = store(KEY_RESUME);
  // The outbox saved before it was kept per visitor has no owner we could send it as: dropped.
  try { localStorage.removeItem(KEY_VISITOR); localStorage.removeItem(KEY_OUTBOX); } catch (e) { /* storage blocked */ }
  var outbox = [];                             // unacknowledged {client_id, text}, survives reloads (savedOutbox)
  var bubbles = {};                            // client_id or message id -> bubble element
  var lastSeq = 0, ws = null, session = null, retry = 0, started = false, typingTimer = null, lastTyping = 0;
  var agentTypingTimer = null;
  // Server limits: `pauseFor` is the wait a refusal asked for (seconds), `dormant` means the server closed the
  // socket as idle and we reconnect only once the page is looked at again; `keepAlive` pings while visible.
  var pauseFor = 0, dormant = false, keepAlive = null;
  // One message in flight at a time, oldest first: when one had to wait (storage briefly down, rate limit)
  // and only it waited, a message typed after it was stored, threaded and answered before it.
  var inflight = null, held = false;

  // The saved outbox is shared by this visitor's tabs: every change re-reads it and adds or removes one message
  // by client id (each tab used to write its own copy whole, dropping what another tab had not sent yet), and a
  // tab sends what the others left too; the server drops a message sent twice by its client id. With storage
  // blocked or full, the tab goes on with its own copy.
  var shared = true;
  function savedOutbox() {
    if (!shared) return outbox;
    try { var list = JSON.parse(localStorage.getItem(KEY_MY_OUTBOX) || "[]"); return Array.isArray(list) ? list : []; }
    catch (e) { shared = false; return outbox; }
  }
  function changeOutbox(add, drop) {
    outbox = savedOutbox().filter(function (m) { return m.client_id !== drop; });
    if (add) outbox.push(add);
    if (!shared) return;
    try { if (outbox.length) localStorage.setItem(KEY_MY_OUTBOX, JSON.stringify(outbox));
          else localStorage.removeItem(KEY_MY_OUTBOX); } catch (e) { shared = false; }
  }
  outbox = savedOutbox();

  function bubble(key, dir, text, author, state) {
    var b = bubbles[key];
    if (!b) {
      b = el("div", { "class": "sbc-msg " + (dir === "in" ? "sbc-in" : "sbc-out") });
      if (author && dir !== "in") b.appendChild(el("span", { "class": "sbc-author" }, author));
      b.appendChild(el("span", { "class": "sbc-text" }, text));
      b.appendChild(el("span", { "class": "sbc-state" }));
      bubbles[key] = b; log.appendChild(b); log.scrollTop = log.scrollHeight;
    }
    b.querySelector(".sbc-state").textContent = state || "";
    return b;
  }

  function transmit(item) {
    if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: "message", client_id: item.client_id, text: item.text }));
  }

  function pump() {
    if (held || inflight || !ws || ws.readyState !== 1) return;
    outbox = savedOutbox();  // with what the other tabs added or had acknowledged meanwhile
    if (!outbox.length) return;
    var id = inflight = outbox[0].client_id;
    transmit(outbox[0]);
    // No answer in 10 s (a frame lost on the way): send it again; the server drops a repeat by client id.
    setTimeout(function () { if (inflight === id) { inflight = null; pump(); } }, 10000);
  }

  function holdFor(seconds) {
    held = true; inflight = null;
    setTimeout(function () { held = false; pump(); }, seconds * 1000);
  }

  function submit(text) {
    text = (text || "").trim();
    if (!text) return;
    if (text.length > MAX_TEXT) { alertBox.textContent = "Messages can be at most " + MAX_TEXT + " characters."; return; }
    var item = { client_id: rid("c"), text: text };
    changeOutbox(item);
    bubble(item.client_id, "in", text, null, "Sending…");
    wake(); pump();
  }

  form.addEventListener("submit", function (e) { e.preventDefault(); submit(input.value); input.value = ""; sendTyping(false); });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit ? form.requestSubmit() : submit(input.value); }
  });
  input.addEventListener("input", function () {
    var now = Date.now();
    if (now - lastTyping > 2000) { lastTyping = now; sendTyping(true); }
    clearTimeout(typingTimer); typingTimer = setTimeout(function () { sendTyping(false); }, 3000);
  });
  function sendTyping(on) {
    if (!on) lastTyping = 0;
    if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: "typing", typing: on }));
  }

  // ---- server frames (table dispatch) ------------------------------------------------------------
  // Seqs count per conversation: a position kept from the previous conversation would skip the new one's
  // first frames (another tab's message, the agent's first replies). The prompt and notes belong to it too.
  function newConversation() {
    lastSeq = 0; note.textContent = ""; clearTimeout(agentTypingTimer);
    csatBox.hidden = true; csatBox.textContent = ""; csatBox.removeAttribute("data-state");
  }

  var handlers = {
    hello: function (f) {
      // The server resumes from 0 when our position is past the end of its stream (not issued for it).
      if (typeof f.since === "number" && f.since < lastSeq) lastSeq = f.since;
      if (typeof f.idle_timeout === "number") startKeepAlive(f.idle_timeout);
      alertBox.textContent = ""; inflight = null; pump();
    },
    conversation: function (f) {
      // The store opened a new conversation (the old one was closed): follow it, and get a token for it
      // before the next reconnect so a resume never replays the old stream.
      if (session) { session.conversation_id = f.conversation_id; session.expires_at = 0; }
      newConversation();
    },
    ack: function (f) {
      changeOutbox(null, f.client_id);
      var b = bubbles[f.client_id]; if (b) { b.querySelector(".sbc-state").textContent = ""; bubbles[f.message_id] = b; }
      if (inflight === f.client_id) inflight = null;
      pump();
    },
    message: function (f) {
      var key = f.client_id && bubbles[f.client_id] ? f.client_id : f.id;
      var b = bubbles[key];
      if (b) {
        // Ours, and stored (maybe sent by another tab): a refusal of this tab's own try no longer says it waits.
        if (key === f.client_id) { b.setAttribute("data-stored", "true"); b.querySelector(".sbc-state").textContent = ""; }
        return;
      }
      bubble(f.id, f.direction === "in" ? "in" : "out", f.text, f.author, "");
      if (f.direction !== "in") { note.textContent = ""; }
    },
    typing: function (f) {
      if (f.at && Date.now() - Date.parse(f.at) > 10000) return;
      clearTimeout(agentTypingTimer);
      note.textContent = f.typing ? (f.author || "An agent") + " is typing…" : "";
      if (f.typing) agentTypingTimer = setTimeout(function () { note.textContent = ""; }, 6000);
    },
    // reply_by: when the SLA clock says a person replies (after the desk opens, if it is closed). Counted down
    // from here, so a reload does not repeat the first figure; a wait of hours also says the day and time.
    status: function (f) {
      var due = f.reply_by ? Date.parse(f.reply_by) : NaN;
      var left = isNaN(due) ? f.eta_minutes : Math.ceil((due - Date.now()) / 60000);
      if (left == null || left <= 0) { note.textContent = "A person will be with you shortly."; return; }
      var n = left < 90 ? left : left < 2880 ? Math.round(left / 60) : Math.round(left / 1440);
      var unit = left < 90 ? "minute" : left < 2880 ? "hour" : "day";
      var by = isNaN(due) || left < 90 ? "" : " (by " + new Date(due).toLocaleString([], {
        weekday: "short", hour: "2-digit", minute: "2-digit" }) + ")";
      note.textContent = "A person will be with you in about " + n + " " + unit + (n === 1 ? "" : "s") + by + ".";
    },
    csat_request: function () { showCsat(); },
    // Replayed on reload and seen by the other tabs: the question was answered, do not ask it again.
    csat_rated: function () {
      if (csatBox.getAttribute("data-state") === "asking") { csatBox.hidden = true; csatBox.textContent = ""; }
    },
    // counted false: this click was not taken (already rated, here, in another tab or by typing a number; or
    // the question expired). Say what is kept instead of thanking for a rating that was thrown away.
    csat_ack: function (f) {
      csatBox.textContent = ""; csatBox.hidden = false; csatBox.setAttribute("data-state", "thanked");
      var text = "Thank you for your feedback!";
      if (f.counted === false) {
        text = typeof f.score === "number"
          ? "You already rated this conversation " + f.score + " out of 5. Thank you!"
          : "This conversation is no longer asking for a rating.";
      }
      csatBox.appendChild(el("p", {}, text));
    },
    error: function (f) {
      alertBox.textContent = f.message || "Something went wrong.";
      if (REFUSALS[f.code] && f.retry_after) pauseFor = f.retry_after;  // the close that follows waits this long
      var b = f.client_id && bubbles[f.client_id];
      if (f.code === "message_too_long" || f.code === "invalid_message") {
        changeOutbox(null, f.client_id);
        if (b) { b.classList.add("sbc-failed"); b.querySelector(".sbc-state").textContent = "Not sent"; }
        if (inflight === f.client_id) inflight = null;
        pump();
      } else if (f.client_id) {
        // Everything behind it waits too, so the conversation keeps the order it was typed in.
        if (b && !b.hasAttribute("data-stored")) b.querySelector(".sbc-state").textContent = "Waiting to send…";
        holdFor(f.retry_after || 2);
      }
    },
    pong: function () {}
  };

  function showCsat() {
    csatBox.textContent = ""; csatBox.hidden = false; csatBox.setAttribute("data-state", "asking");
    csatBox.appendChild(el("p", { id: "sbc-csat-q" }, "How would you rate our help? (1 = poor, 5 = great)"));
    var row = el("div");
    for (var i = 1; i <= 5; i++) {
      (function (score) {
        var btn = el("button", { type: "button", "aria-label": "Rate " + score + " out of 5", "data-score": String(score) }, String(score));
        btn.addEventListener("click", function () {
          if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: "csat", score: score }));
        });
        row.appendChild(btn);
      })(i);
    }
    csatBox.appendChild(row);
  }

  // ---- connection --------------------------------------------------------------------------------
  // Socket refusals (too many tabs or chats from this network, server busy) come as an error frame with
  // retry_after and then one of these close codes; each close code says what we do next.
  var REFUSALS = { too_many_tabs: true, too_many_sockets: true, server_busy: true };
  var CLOSES = {
    4408: function () { dormant = true; },                                    // idle: wait to be looked at
    4429: function () { reconnect(pauseFor || 30); },                         // over a cap for us
    1013: function () { reconnect(pauseFor || 5); }                           // server busy
  };

  // A visible page pings often enough that the server never takes it for idle; a hidden one lets its socket go
  // (the server closes it) and reconnects, missing nothing, when it is seen again.
  function startKeepAlive(idleSeconds) {
    clearInterval(keepAlive);
    keepAlive = setInterval(function () {
      if (ws && ws.readyState === 1 && document.visibilityState === "visible") ws.send(JSON.stringify({ type: "ping" }));
    }, Math.max(250, idleSeconds * 1000 / 3));
  }

  function wake() { if (dormant) { dormant = false; open(); } }
  document.addEventListener("visibilitychange", function () { if (document.visibilityState === "visible") wake(); });
  window.addEventListener("focus", wake);

  function startSession() {
    resume = store(KEY_RESUME) || resume;  // another tab may have started the chat since this one loaded
    var body = { resume: resume || undefined };
    if (data.userId || data.email || data.name) {
      body.identity = { user_id: data.userId || undefined, user_hash: data.userHash || undefined,
                        email: data.email || undefined, name: data.name || undefined };
    }
    return fetch(root + "/webchat/session", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body) }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) { var e = new Error(j.message || "chat unavailable"); e.retryAfter = j.retry_after; throw e; }
        return j;
      });
    }).then(function (j) {
      if (j.resume) { resume = j.resume; store(KEY_RESUME, resume); }
      if (session && session.conversation_id !== j.conversation_id) newConversation();
      session = j; return j;
    });
  }

  function connect() {
    if (started) return; started = true; open();
  }

  function open() {
    var fresh = session && session.expires_at * 1000 - Date.now() > 30000;
    (fresh ? Promise.resolve(session) : startSession()).then(function (s) {
      // The token rides in the handshake's Sec-WebSocket-Protocol header, not the URL: proxies and access logs
      // record URLs. The server answers with ws_protocol, which is offered first.
      var url = root.replace(/^http/, "ws") + s.ws_path + "?since=" + lastSeq;
      var opened = false;
      ws = new WebSocket(url, [s.ws_protocol || "switchboard.v1", "switchboard.token." + s.token]);
      api._ws = ws;
      ws.onopen = function () { opened = true; retry = 0; };
      ws.onmessage = function (ev) {
        var f; try { f = JSON.parse(ev.data); } catch (e) { return; }
        if (typeof f.seq === "number") { if (f.seq <= lastSeq) return; lastSeq = f.seq; }
        var h = handlers[f.type]; if (h) h(f);
      };
      ws.onclose = function (ev) {
        // Refused before it opened (the browser hides the 401): most likely the token, e.g. the server
        // restarted with a new key or another process answered. Ask for a new session on the next attempt.
        if (!opened && session === s) session.expires_at = 0;
        ws = null; inflight = null;
        var then = CLOSES[ev.code] || function () { reconnect(); };
        then(); pauseFor = 0;
      };
    }).catch(function (e) { alertBox.textContent = String(e.message || e); reconnect(e.retryAfter); });
  }

  // `seconds`: the server asked us to wait (a limit); otherwise back off. Jitter spreads a busy server's
  // refused widgets instead of sending them all back at the same moment.
  function reconnect(seconds) {
    var delay = seconds ? seconds * 1000 * (1 + Math.random() / 4) : Math.min(5000, 250 * Math.pow(2, retry++));
    setTimeout(open, delay);
  }

  var api = { open: openPanel, close: closePanel, send: submit, _ws: null,
              state: function () { return { lastSeq: lastSeq, outbox: outbox.slice(), session: session, inflight: inflight }; } };
  window.SwitchboardChat = api;
})();

/* Block Kit and mrkdwn rendering for the emulator desk.
 *
 * Safety rule: message content only ever reaches the DOM through createTextNode / textContent.
 * Slack's escapes (&amp; &lt; &gt;) are decoded into *text*, never parsed as HTML, so a customer
 * writing <script> or &lt;!channel&gt; sees exactly those characters and nothing runs.
 */
"use strict";

(function () {
  const LINK_SCHEMES = /^(https?:|mailto:)/i;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function decode(text) {
    // Display-only decoding of Slack's three escapes; &amp; last so "&amp;lt;" stays "&lt;".
    return String(text).replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
  }

  let userNames = {};

  function setUsers(users) {
    userNames = {};
    for (const u of users) userNames[u.id] = u.name;
  }

  // A Slack control sequence: <@U123>, <#C123|name>, <!channel>, <http://x|label>.
  function control(inner) {
    const bar = inner.indexOf("|");
    const target = bar >= 0 ? inner.slice(0, bar) : inner;
    const label = bar >= 0 ? inner.slice(bar + 1) : "";
    if (target.startsWith("@")) {
      const id = target.slice(1);
      return el("span", "mention", "@" + (label || userNames[id] || id));
    }
    if (target.startsWith("#")) return el("span", "mention", "#" + (label || target.slice(1)));
    if (target.startsWith("!")) {
      const word = target.slice(1).split("^")[0];
      return el("span", "mention broadcast", "@" + decode(label || word));
    }
    if (LINK_SCHEMES.test(target)) {
      const a = el("a", "link", decode(label || target));
      a.href = decode(target);
      a.title = decode(target);
      a.rel = "noopener noreferrer nofollow";
      a.target = "_blank";
      return a;
    }
    return document.createTextNode(decode("<" + inner + ">"));
  }

  // Like Slack, *bold*, _italic_ and ~strike~ only at word edges: SWITCHBOARD_API_CALLBACK_URL is a name to copy,
  // not "SWITCHBOARD" + italic "API" + "CALLBACK" + italic "URL".
  const INLINE = /(<[^<>\n]+>)|(`[^`\n]+`)|((?<![\p{L}\p{N}_*])\*[^*\n]+\*(?![\p{L}\p{N}_*]))|((?<![\p{L}\p{N}_])_[^_\n]+_(?![\p{L}\p{N}_]))|((?<![\p{L}\p{N}_~])~[^~\n]+~(?![\p{L}\p{N}_~]))/u;
  const WRAPPERS = { "*": "strong", "_": "em", "~": "s" };

  function inline(text, parent) {
    let rest = text;
    while (rest) {
      const match = INLINE.exec(rest);
      if (!match) {
        parent.appendChild(document.createTextNode(decode(rest)));
        return;
      }
      if (match.index > 0) parent.appendChild(document.createTextNode(decode(rest.slice(0, match.index))));
      const token = match[0];
      if (match[1]) parent.appendChild(control(token.slice(1, -1)));
      else if (match[2]) parent.appendChild(el("code", "", decode(token.slice(1, -1))));
      else {
        const wrap = el(WRAPPERS[token[0]]);
        inline(token.slice(1, -1), wrap);
        parent.appendChild(wrap);
      }
      rest = rest.slice(match.index + token.length);
    }
  }

  function mrkdwn(text) {
    const root = el("div", "mrkdwn");
    const lines = String(text || "").split("\n");
    lines.forEach((line, i) => {
      const quote = /^(&gt;|>)\s?/.exec(line);
      if (quote) {
        const q = el("blockquote");
        inline(line.slice(quote[0].length), q);
        root.appendChild(q);
        return;
      }
      inline(line, root);
      if (i < lines.length - 1) root.appendChild(el("br"));
    });
    return root;
  }

  function textObject(obj) {
    if (!obj) return el("span");
    if (obj.type === "mrkdwn") return mrkdwn(obj.text);
    return el("span", "plain", obj.text || "");
  }

  function plain(obj) {
    return obj && obj.text ? String(obj.text) : "";
  }

  let nextId = 0;
  function uid(prefix) {
    nextId += 1;
    return prefix + "-" + nextId;
  }

  function selectElement(element, ctx, initialValue) {
    const wrap = el("span", "select-wrap");
    const select = el("select");
    select.id = uid("sel");
    select.dataset.actionId = element.action_id || "";
    const label = el("label", "visually-hidden", plain(element.placeholder) || "Choose");
    label.htmlFor = select.id;
    const placeholder = el("option", "", plain(element.placeholder) || "Choose…");
    placeholder.value = "";
    select.appendChild(placeholder);
    const options = element.type === "users_select"
      ? ctx.users.filter((u) => !u.is_bot).map((u) => ({ text: { text: u.real_name }, value: u.id }))
      : (element.options || []).concat(...(element.option_groups || []).map((g) => g.options || []));
    for (const opt of options) {
      const o = el("option", "", plain(opt.text));
      o.value = opt.value;
      select.appendChild(o);
    }
    const initial = initialValue
      || (element.initial_option && element.initial_option.value)
      || element.initial_user || "";
    select.value = initial;
    if (ctx.onSelect) select.addEventListener("change", () => select.value && ctx.onSelect(element, select.value));
    wrap.append(label, select);
    return wrap;
  }

  function button(element, ctx) {
    const b = el("button", "btn" + (element.style ? " " + element.style : ""), plain(element.text));
    b.type = "button";
    b.dataset.actionId = element.action_id || "";
    if (element.url) b.title = element.url;
    if (ctx.onClick) b.addEventListener("click", () => ctx.onClick(element, b));
    return b;
  }

  function interactive(element, ctx) {
    if (!element) return null;
    if (element.type === "button") return button(element, ctx);
    if (element.type === "static_select" || element.type === "users_select") return selectElement(element, ctx);
    if (element.type === "image") return el("span", "image-alt", "[image: " + (element.alt_text || "") + "]");
    return el("span", "unsupported", "[" + element.type + "]");
  }

  function inputElement(block, ctx) {
    const element = block.element || {};
    const field = el("div", "input-block");
    field.dataset.blockId = block.block_id || "";
    field.dataset.actionId = element.action_id || "";
    field.dataset.elementType = element.type || "";
    let control;
    if (element.type === "plain_text_input") {
      control = el(element.multiline ? "textarea" : "input");
      if (!element.multiline) control.type = "text";
      control.value = element.initial_value || "";
      if (element.placeholder) control.placeholder = plain(element.placeholder);
      control.id = uid("in");
    } else if (element.type === "static_select" || element.type === "users_select") {
      const wrap = selectElement(element, { users: ctx.users });
      control = wrap.querySelector("select");
    } else {
      control = el("span", "unsupported", "[" + element.type + "]");
    }
    control.classList.add("input-control");
    const label = el("label", "input-label", plain(block.label) + (block.optional ? " (optional)" : ""));
    label.htmlFor = control.id;
    field.append(label, control);
    if (block.hint) field.appendChild(el("div", "hint", plain(block.hint)));
    const error = ctx.errors && ctx.errors[block.block_id];
    if (error) {
      const e = el("div", "field-error", error);
      e.setAttribute("role", "alert");
      field.appendChild(e);
    }
    return field;
  }

  const RENDERERS = {
    header: (b) => el("h3", "block-header", plain(b.text)),
    divider: () => el("hr", "block-divider"),
    section: (b, ctx) => {
      const s = el("div", "block-section");
      const body = el("div", "section-body");
      if (b.text) body.appendChild(textObject(b.text));
      if (b.fields && b.fields.length) {
        const grid = el("div", "fields");
        for (const f of b.fields) grid.appendChild(textObject(f));
        body.appendChild(grid);
      }
      s.appendChild(body);
      const acc = interactive(b.accessory, ctx);
      if (acc) s.appendChild(el("div", "accessory")).appendChild(acc);
      return s;
    },
    context: (b) => {
      const c = el("div", "block-context");
      for (const e of b.elements || []) {
        c.appendChild(e.type === "image" ? el("span", "image-alt", "[" + (e.alt_text || "image") + "]") : textObject(e));
      }
      return c;
    },
    actions: (b, ctx) => {
      const a = el("div", "block-actions");
      for (const e of b.elements || []) {
        const node = interactive(e, ctx);
        if (node) a.appendChild(node);
      }
      return a;
    },
    image: (b) => el("div", "image-alt", "[image: " + (b.alt_text || "") + "]"),
    input: (b, ctx) => inputElement(b, ctx),
  };

  // ctx: {users, onClick(element, node), onSelect(element, value), errors}; each block
  // gets its block_id on the node so the desk can send it back with the action.
  function renderBlocks(blocks, ctx) {
    const root = el("div", "blocks");
    (blocks || []).forEach((block, index) => {
      const render = RENDERERS[block.type];
      const blockId = block.block_id || "b" + index;
      const local = Object.assign({}, ctx, {
        onClick: ctx.onClick && ((e, n) => ctx.onClick(e, n, blockId)),
        onSelect: ctx.onSelect && ((e, v) => ctx.onSelect(e, v, blockId)),
      });
      const node = render ? render(block, local) : el("div", "unsupported", "[unsupported block: " + block.type + "]");
      node.dataset.blockId = blockId;
      root.appendChild(node);
    });
    return root;
  }

  window.SBBlocks = { el, mrkdwn, plain, renderBlocks, setUsers };
})();

/*! RAG chat widget: ask questions about the documents, answers stream in with checkable citations.
 *
 * Embed:  <script src="https://host/widget.js" data-api="https://host" defer></script>
 *   data-api          base URL of the question-answering API (default: the origin this script came from)
 *   data-title        panel heading (default "Ask the documents")
 *   data-greeting     first line shown in an empty conversation
 *   data-position     "right" (default) or "left": which bottom corner
 *   data-accent       accent colour (launcher, your messages, links), any CSS colour (default #1f5fbf)
 *   data-accent-text  text colour on the accent (default white)
 *   data-theme        "auto" (default: follows the system's light/dark setting), "light" or "dark"
 *   data-top-k        passages per question (1-50, default 5)
 *   data-max-body-bytes  request size the widget stays under (default 60000; the API's RAG_MAX_BODY_BYTES is 65536)
 *
 * Plain JavaScript, no dependencies, no build step. Everything lives in a shadow DOM, so the page's
 * styles do not reach the widget and the widget's styles do not reach the page. Server data (answers,
 * quotes, titles, sources) is only ever inserted as text nodes, never parsed as HTML. The conversation
 * is kept here, in the page, and sent as `history` with each question; it is saved in this tab's
 * sessionStorage so that a reload keeps it (closing the tab forgets it). No secret is needed.
 */
(function () {
  "use strict";

  var script = document.currentScript ||
    (function () {
      var all = document.querySelectorAll("script[src]");
      for (var i = all.length - 1; i >= 0; i--) {
        if (/\/widget\.js(\?|#|$)/.test(all[i].src)) return all[i];
      }
      return null;
    })();
  if (!script || script.__ragWidget) return;
  script.__ragWidget = true;

  function attr(name, fallback) {
    var v = script.getAttribute(name);
    return v == null || v === "" ? fallback : v;
  }
  function cssColor(value) {
    return value && window.CSS && CSS.supports && CSS.supports("color", value) ? value : null;
  }

  var API = ((attr("data-api", "") || new URL(script.src, location.href).origin) + "").replace(/\/+$/, "");
  var TITLE = attr("data-title", "Ask the documents");
  var GREETING = attr("data-greeting", "Ask a question; answers cite the documents they come from. Click a [n] to see the quoted source.");
  var POSITION = attr("data-position", "right") === "left" ? "left" : "right";
  var THEME = ({ light: "light", dark: "dark" })[attr("data-theme", "auto")] || "auto";
  var ACCENT = cssColor(attr("data-accent", null));
  var ACCENT_TEXT = cssColor(attr("data-accent-text", null));
  var TOP_K = Math.min(50, Math.max(1, parseInt(attr("data-top-k", "5"), 10) || 5));
  var MAX_BODY_BYTES = Math.max(2048, parseInt(attr("data-max-body-bytes", "60000"), 10) || 60000);
  var MAX_HISTORY = 20;            // messages sent back as context (the API accepts up to 50)
  var MAX_MESSAGE_CHARS = 20000;   // the API's limit per history message
  var MAX_STORED_BYTES = 1500000;  // what the conversation may take in sessionStorage
  var STORE_KEY = "rag-widget:" + API;
  var MARKER = /\[(\d+(?:\s*,\s*\d+)*)\]/g;
  var utf8 = new TextEncoder();

  var CSS_TEXT = [
    ":host{all:initial !important;}",
    "*,*::before,*::after{box-sizing:border-box;}",
    // Colours are custom properties: data-accent / data-accent-text set the first two, dark mode the rest.
    ".root{--accent:#1f5fbf;--accent-hover:#184c99;--on-accent:#fff;--bg:#fff;--fg:#1b1f24;--muted:#57606a;--faint:#6e7781;",
    "--border:#d0d7de;--bubble:#f0f3f6;--surface:#f6f8fa;--cite-bg:#e7effb;--cite-fg:#1f4f99;--cite-border:#9db7e0;",
    "--mark:#fff3b0;--error-bg:#fff1f0;--error-border:#f5c2c0;--error-fg:#8c1d18;--focus:#f5a623;",
    "position:fixed;bottom:16px;z-index:2147483000;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--fg);}",
    ".root.right{right:16px;} .root.left{left:16px;}",
    ".root.dark{--bg:#161b22;--fg:#e6edf3;--muted:#9ea7b3;--faint:#8b949e;--border:#30363d;--bubble:#21262d;--surface:#0d1117;",
    "--cite-bg:#1c2d4a;--cite-fg:#a5c8ff;--cite-border:#3b5b8f;--mark:#6b5800;--error-bg:#3a1614;--error-border:#7d2a25;--error-fg:#ffb4ab;}",
    "@media (prefers-color-scheme:dark){.root.auto{--bg:#161b22;--fg:#e6edf3;--muted:#9ea7b3;--faint:#8b949e;--border:#30363d;",
    "--bubble:#21262d;--surface:#0d1117;--cite-bg:#1c2d4a;--cite-fg:#a5c8ff;--cite-border:#3b5b8f;--mark:#6b5800;",
    "--error-bg:#3a1614;--error-border:#7d2a25;--error-fg:#ffb4ab;}}",
    "button{font:inherit;cursor:pointer;}",
    "button:focus-visible,textarea:focus-visible,[tabindex]:focus-visible{outline:3px solid var(--focus);outline-offset:2px;}",
    ".launcher{display:flex;align-items:center;gap:8px;border:0;border-radius:999px;padding:12px 18px;background:var(--accent);color:var(--on-accent);font-weight:600;box-shadow:0 4px 14px rgba(0,0,0,.25);}",
    ".launcher:hover{filter:brightness(.9);}",
    ".launcher svg{width:20px;height:20px;fill:currentColor;}",
    ".panel{position:fixed;bottom:16px;width:min(400px,calc(100vw - 16px));height:min(620px,calc(100vh - 32px));display:flex;flex-direction:column;background:var(--bg);border:1px solid var(--border);border-radius:12px;box-shadow:0 10px 32px rgba(0,0,0,.28);overflow:hidden;}",
    ".right .panel{right:16px;} .left .panel{left:16px;}",
    ".panel[hidden]{display:none;}",
    "@media (max-width:480px){.panel,.right .panel,.left .panel{right:8px;left:8px;bottom:8px;width:auto;height:calc(100vh - 16px);} .root.right{right:8px;} .root.left{left:8px;} .root{bottom:8px;}}",
    ".head{display:flex;align-items:center;justify-content:space-between;gap:4px;padding:8px 8px 8px 16px;background:var(--accent);color:var(--on-accent);}",
    ".head h2{margin:0;font-size:16px;font-weight:600;flex:1;min-width:0;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;}",
    ".icon{border:0;background:transparent;color:inherit;font-size:22px;line-height:1;width:36px;height:36px;border-radius:8px;flex:none;}",
    ".icon.new{font-size:13px;width:auto;padding:0 8px;font-weight:600;}",
    ".icon:hover{background:rgba(255,255,255,.18);}",
    ".body{position:relative;flex:1;min-height:0;display:flex;flex-direction:column;}",
    ".log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:10px;}",
    ".hint{color:var(--muted);font-size:14px;margin:0;}",
    ".kept{color:var(--faint);font-size:12px;margin:0;}",
    ".msg{max-width:92%;padding:8px 12px;border-radius:12px;white-space:pre-wrap;overflow-wrap:anywhere;}",
    ".user{align-self:flex-end;background:var(--accent);color:var(--on-accent);border-bottom-right-radius:4px;}",
    ".assistant{align-self:flex-start;background:var(--bubble);border-bottom-left-radius:4px;}",
    ".assistant[data-state=streaming] .text::after{content:'\\258D';animation:blink 1s steps(1) infinite;color:var(--accent);}",
    "@keyframes blink{50%{opacity:0;}}",
    ".assistant.abstained{background:var(--surface);border:1px dashed var(--faint);color:var(--muted);font-style:italic;}",
    ".label{display:block;font-style:normal;font-size:12px;font-weight:700;letter-spacing:.03em;text-transform:uppercase;color:var(--faint);margin-bottom:2px;}",
    ".assistant.error{background:var(--error-bg);border:1px solid var(--error-border);color:var(--error-fg);}",
    ".cite{display:inline;border:1px solid var(--cite-border);background:var(--cite-bg);color:var(--cite-fg);border-radius:6px;padding:0 4px;margin:0 1px;font-size:13px;font-weight:600;vertical-align:baseline;font-style:normal;}",
    ".cite:hover,.cite[aria-expanded=true]{background:var(--accent);color:var(--on-accent);}",
    ".sources{margin:6px 0 0;padding:6px 0 0;border-top:1px solid var(--border);list-style:none;font-size:13px;white-space:normal;}",
    ".sources li{margin:2px 0;}",
    ".note{display:block;font-size:12px;color:var(--faint);margin-top:4px;white-space:normal;font-style:normal;}",
    ".actions{display:flex;flex-wrap:wrap;align-items:center;gap:4px;margin-top:6px;white-space:normal;font-style:normal;}",
    ".act{border:1px solid var(--border);background:var(--bg);color:var(--muted);border-radius:6px;padding:2px 8px;font-size:12px;line-height:1.6;}",
    ".act:hover{color:var(--fg);border-color:var(--faint);}",
    ".act[aria-pressed=true]{background:var(--accent);border-color:var(--accent);color:var(--on-accent);}",
    ".act:disabled{cursor:default;opacity:.8;}",
    ".thumb{display:inline-flex;align-items:center;padding:3px 7px;} .thumb svg{width:14px;height:14px;fill:currentColor;}",
    ".thumb.down svg{transform:rotate(180deg);}",
    ".comment{display:flex;gap:4px;width:100%;margin-top:4px;}",
    ".comment input{flex:1;min-width:0;font:inherit;font-size:13px;padding:4px 6px;border:1px solid var(--border);border-radius:6px;background:var(--bg);color:var(--fg);}",
    ".thanks{font-size:12px;color:var(--faint);}",
    ".retry{margin-top:6px;border:1px solid var(--error-border);background:var(--bg);color:var(--error-fg);border-radius:6px;padding:2px 10px;font-size:13px;}",
    ".source{position:absolute;inset:0;background:var(--bg);display:flex;flex-direction:column;padding:12px 16px;overflow-y:auto;gap:8px;}",
    ".source[hidden]{display:none;}",
    ".source h3{margin:0;font-size:15px;}",
    ".source .doc{margin:0;font-size:13px;color:var(--muted);overflow-wrap:anywhere;}",
    ".source .doc code{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace;}",
    ".context{margin:0;padding:8px 12px;border-left:4px solid var(--accent);background:var(--surface);white-space:pre-wrap;overflow-wrap:anywhere;color:var(--muted);}",
    ".context mark{background:var(--mark);color:var(--fg);border-radius:2px;padding:0 1px;}",
    ".context.whole{max-height:none;}",
    ".srcbar{display:flex;gap:8px;flex-wrap:wrap;}",
    ".back{align-self:flex-start;border:1px solid var(--border);background:var(--surface);color:var(--fg);border-radius:8px;padding:6px 12px;}",
    ".form{display:flex;gap:8px;padding:10px;border-top:1px solid var(--border);background:var(--bg);}",
    ".form textarea{flex:1;min-width:0;resize:none;font:inherit;padding:8px 10px;border:1px solid var(--border);border-radius:8px;height:42px;max-height:120px;color:var(--fg);background:var(--bg);}",
    ".send{border:0;border-radius:8px;padding:0 16px;background:var(--accent);color:var(--on-accent);font-weight:600;}",
    ".send:disabled{opacity:.55;cursor:progress;}",
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap;}",
  ].join("\n");

  // -- tiny DOM helper: attributes and text only, never HTML -------------------------------
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) for (var k in attrs) if (attrs[k] != null) node.setAttribute(k, attrs[k]);
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  var uid = "rag-" + Math.random().toString(36).slice(2, 8);
  var host = el("rag-chat-widget", { "data-testid": "rag-widget-host" });
  var shadow = host.attachShadow({ mode: "open" });
  var style = document.createElement("style");
  style.textContent = CSS_TEXT;
  shadow.appendChild(style);

  var root = el("div", { "class": "root " + POSITION + " " + THEME, "data-testid": "rag-widget" });
  if (ACCENT) root.style.setProperty("--accent", ACCENT);
  if (ACCENT_TEXT) root.style.setProperty("--on-accent", ACCENT_TEXT);
  var launcher = el("button", {
    "class": "launcher", type: "button", "data-testid": "rag-launcher", "aria-haspopup": "dialog",
    "aria-expanded": "false", "aria-controls": uid + "-panel", "aria-label": "Open chat: " + TITLE,
  });
  var svgNS = "http://www.w3.org/2000/svg";
  var svg = document.createElementNS(svgNS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  var path = document.createElementNS(svgNS, "path");
  path.setAttribute("d", "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z");
  svg.appendChild(path);
  launcher.appendChild(svg);
  launcher.appendChild(el("span", null, ["Ask"]));

  var heading = el("h2", { id: uid + "-title", "data-testid": "rag-title" }, [TITLE]);
  var newBtn = el("button", { "class": "icon new", type: "button", "data-testid": "rag-new",
    title: "Start a new conversation", "aria-label": "New conversation" }, ["New"]);
  var closeBtn = el("button", { "class": "icon", type: "button", "aria-label": "Close chat", "data-testid": "rag-close" }, ["\u00d7"]);
  var log = el("div", {
    "class": "log", role: "log", "aria-live": "polite", "aria-relevant": "additions text",
    "aria-label": "Conversation", "data-testid": "rag-log", tabindex: "0",
  });

  var sourceTitle = el("h3", { id: uid + "-src-title", "data-testid": "rag-source-title", tabindex: "-1" });
  var sourceDoc = el("code", { "data-testid": "rag-source-source" });
  var sourceContext = el("blockquote", { "class": "context", "data-testid": "rag-source-context" });
  var sourceBack = el("button", { "class": "back", type: "button", "data-testid": "rag-source-close" }, ["\u2190 Back to the answer"]);
  var sourceOpen = el("button", { "class": "back", type: "button", "data-testid": "rag-source-open" }, ["Open the whole document"]);
  var sourceLabel = el("span", { "class": "label", "data-testid": "rag-source-label" });
  var sourceNote = el("p", { "class": "kept", "data-testid": "rag-source-note" });
  var sourcePanel = el("section", {
    "class": "source", role: "region", "aria-labelledby": uid + "-src-title", "data-testid": "rag-source", hidden: "",
  }, [el("div", { "class": "srcbar" }, [sourceBack, sourceOpen]), sourceLabel, sourceTitle,
      el("p", { "class": "doc" }, ["Document: ", sourceDoc]), sourceContext, sourceNote]);

  var input = el("textarea", {
    rows: "1", "aria-label": "Your question", placeholder: "Ask a question\u2026", "data-testid": "rag-input",
    maxlength: "2000", enterkeyhint: "send", autocomplete: "off",
  });
  var sendBtn = el("button", { "class": "send", type: "submit", "data-testid": "rag-send" }, ["Send"]);
  var form = el("form", { "class": "form", "data-testid": "rag-form", "aria-label": "Ask a question" }, [input, sendBtn]);
  var status = el("div", { "class": "sr", role: "status", "aria-live": "polite", "data-testid": "rag-status" });

  var panel = el("div", {
    "class": "panel", id: uid + "-panel", role: "dialog", "aria-modal": "false", "aria-labelledby": uid + "-title",
    "data-testid": "rag-panel", hidden: "",
  }, [
    el("div", { "class": "head" }, [heading, newBtn, closeBtn]),
    el("div", { "class": "body" }, [log, sourcePanel]),
    form, status,
  ]);
  root.appendChild(launcher);
  root.appendChild(panel);
  shadow.appendChild(root);

  // -- state --------------------------------------------------------------------------------
  // `entries`: the completed turns, oldest first: {role: "user", content} and
  // {role: "assistant", content, citations, abstained, generator, fallback, feedback}. Failed turns are
  // shown but never stored or sent back. Saved to sessionStorage after every change.
  var entries = [];
  var busy = false;
  var openedFrom = null;     // the citation button that opened the source panel
  var shownCitation = null;

  function storage() {
    try { return window.sessionStorage; } catch (e) { return null; }   // blocked in some privacy modes
  }

  function save() {
    var s = storage();
    if (!s) return;
    var kept = entries.slice();
    var text = JSON.stringify({ v: 1, open: isOpen(), entries: kept });
    while (utf8.encode(text).length > MAX_STORED_BYTES && kept.length > 2) {   // drop the oldest turns first
      kept = kept.slice(2);
      text = JSON.stringify({ v: 1, open: isOpen(), entries: kept });
    }
    try { s.setItem(STORE_KEY, text); } catch (e) { /* quota: the conversation still works, unsaved */ }
  }

  function restore() {
    var s = storage();
    if (!s) return null;
    try {
      var saved = JSON.parse(s.getItem(STORE_KEY) || "null");
      if (saved && saved.v === 1 && Array.isArray(saved.entries)) return saved;
    } catch (e) { /* unreadable: start afresh */ }
    return null;
  }

  function isOpen() { return !panel.hasAttribute("hidden"); }

  function openPanel() {
    panel.removeAttribute("hidden");
    launcher.hidden = true;
    launcher.setAttribute("aria-expanded", "true");
    input.focus();
    save();
  }

  function closePanel() {
    closeSource(false);
    panel.setAttribute("hidden", "");
    launcher.hidden = false;
    launcher.setAttribute("aria-expanded", "false");
    launcher.focus();
    save();
  }

  /** The quote inside its surrounding text, the quote highlighted: `before <mark>quote</mark> after`. */
  function showInContext(text, start, c) {
    while (sourceContext.firstChild) sourceContext.removeChild(sourceContext.firstChild);
    var from = c.start - start, to = c.end - start;
    var ok = typeof text === "string" && from >= 0 && to <= text.length && text.slice(from, to) === c.text;
    var mark = el("mark", { "data-testid": "rag-source-quote" }, [c.text || ""]);
    if (ok) {
      if (from > 0) sourceContext.appendChild(document.createTextNode(text.slice(0, from)));
      sourceContext.appendChild(mark);
      if (to < text.length) sourceContext.appendChild(document.createTextNode(text.slice(to)));
    } else {
      sourceContext.appendChild(mark);
    }
    return mark;
  }

  function showSource(citation, button) {
    if (openedFrom && openedFrom !== button) openedFrom.setAttribute("aria-expanded", "false");
    openedFrom = button;
    shownCitation = citation;
    if (button) button.setAttribute("aria-expanded", "true");
    sourceLabel.textContent = "Source [" + citation.id + "]";
    sourceTitle.textContent = citation.title || "(untitled document)";
    sourceDoc.textContent = citation.source || citation.document_id || "";
    var ctx = citation.context;
    showInContext(ctx ? ctx.text : null, ctx ? ctx.start : 0, citation);
    sourceContext.classList.remove("whole");
    sourceContext.setAttribute("data-view", "passage");
    sourceNote.textContent = "Characters " + citation.start + "\u2013" + citation.end + " of the document; the highlighted text is the quote.";
    sourceOpen.hidden = !citation.document_id;
    sourceOpen.disabled = false;
    sourcePanel.setAttribute("data-citation", String(citation.id));
    sourcePanel.removeAttribute("hidden");
    sourceTitle.focus({ preventScroll: true });
    revealQuote();
  }

  /** Scrolls the source view so that the highlighted quote is in sight (the title stays focused). */
  function revealQuote() {
    var mark = sourceContext.querySelector("mark");
    if (!mark) return;
    var top = mark.offsetTop - sourcePanel.clientHeight / 3;
    sourcePanel.scrollTop = Math.max(0, top);
  }

  /** The whole stored document (GET /documents/{id}), scrolled to the highlighted quote. */
  function openWholeDocument() {
    var c = shownCitation;
    if (!c || !c.document_id) return;
    sourceOpen.disabled = true;
    sourceNote.textContent = "Loading the document\u2026";
    fetch(API + "/documents/" + encodeURIComponent(c.document_id), { mode: "cors", credentials: "omit" })
      .then(function (r) {
        if (!r.ok) throw new Error(r.status === 401 ? "this service needs a key to show documents" : "the service answered " + r.status);
        return r.json();
      })
      .then(function (doc) {
        if (shownCitation !== c) return;
        var mark = showInContext(doc.text, 0, c);
        sourceContext.classList.add("whole");
        sourceContext.setAttribute("data-view", "document");
        sourceNote.textContent = "The whole document (" + doc.text.length + " characters); the quote is highlighted.";
        sourceOpen.hidden = true;
        revealQuote();
      })
      .catch(function (err) {
        sourceOpen.disabled = false;
        sourceNote.textContent = "The document could not be opened: " + (err && err.message ? err.message : "network error") + ".";
      });
  }

  function closeSource(restoreFocus) {
    if (sourcePanel.hasAttribute("hidden")) return false;
    sourcePanel.setAttribute("hidden", "");
    shownCitation = null;
    var from = openedFrom;
    openedFrom = null;
    if (from) {
      from.setAttribute("aria-expanded", "false");
      if (restoreFocus !== false && from.isConnected) from.focus();
    }
    return true;
  }

  function scrollDown() { log.scrollTop = log.scrollHeight; }

  function say(text) { status.textContent = text; }

  // -- rendering ----------------------------------------------------------------------------
  function citeButton(c, label) {
    var b = el("button", {
      "class": "cite", type: "button", "data-testid": "rag-citation", "data-n": String(c.id),
      "aria-expanded": "false", "aria-label": "Source " + c.id + ": " + (c.title || c.source || "document"),
    }, [label]);
    b.addEventListener("click", function () { showSource(c, b); });
    return b;
  }

  // A document's own bracketed numbers ("[2]", "[29, 30]") shown as the server renders them: "(2)".
  var LITERAL = /\[(\s*\d[^\[\]\n]{0,60})\]/g;

  /** The answer from its segments (text, then a button per citation), or, from an older server,
   *  as text nodes with each [n] that names a citation turned into a button. */
  function renderAnswer(container, answer, citations, segments) {
    var byId = {};
    citations.forEach(function (c) { byId[c.id] = c; });
    if (Array.isArray(segments) && segments.length) {
      segments.forEach(function (s) {
        var text = String(s.text || ""), prev;
        do { prev = text; text = text.replace(LITERAL, "($1)"); } while (text !== prev);   // nested: inside out
        var ids = (Array.isArray(s.citations) ? s.citations : []).filter(function (n) { return byId[n]; });
        container.appendChild(document.createTextNode(text + (ids.length && text ? " " : "")));
        ids.forEach(function (n) { container.appendChild(citeButton(byId[n], "[" + n + "]")); });
      });
      return;
    }
    var last = 0;
    answer.replace(MARKER, function (match, nums, offset) {
      var ids = nums.split(",").map(function (s) { return parseInt(s, 10); });
      if (!ids.every(function (n) { return byId[n]; })) return match;   // not a real marker: leave as text
      if (offset > last) container.appendChild(document.createTextNode(answer.slice(last, offset)));
      ids.forEach(function (n) { container.appendChild(citeButton(byId[n], "[" + n + "]")); });
      last = offset + match.length;
      return match;
    });
    if (last < answer.length) container.appendChild(document.createTextNode(answer.slice(last)));
  }

  function greeting() {
    while (log.firstChild) log.removeChild(log.firstChild);
    log.appendChild(el("p", { "class": "hint", "data-testid": "rag-greeting" }, [GREETING]));
    log.appendChild(el("p", { "class": "kept", "data-testid": "rag-kept-note" },
      ["This conversation is kept in this browser tab until you close it or start a new one."]));
  }

  function addUser(text) {
    var m = el("div", { "class": "msg user", "data-testid": "rag-msg-user" }, [el("span", { "class": "sr" }, ["You: "]), text]);
    log.appendChild(m);
    scrollDown();
    return m;
  }

  function addAssistant() {
    var stream = el("span", { "class": "text", "data-testid": "rag-answer-text", "data-stream": "" });
    var m = el("div", {
      "class": "msg assistant", "data-testid": "rag-answer", "data-state": "streaming", "aria-busy": "true",
    }, [el("span", { "class": "sr" }, ["Answer: "]), stream]);
    log.appendChild(m);
    scrollDown();
    return { node: m, text: stream, streamed: "" };
  }

  /** The answer and its sources as plain text, for the clipboard. */
  function plainText(entry) {
    var out = entry.content;
    if (entry.citations.length) {
      out += "\n\nSources:\n" + entry.citations.map(function (c) {
        return "[" + c.id + "] " + (c.title || c.source || c.document_id) + (c.source ? " (" + c.source + ")" : "") +
          ": \u201c" + c.text + "\u201d";
      }).join("\n");
    }
    return out;
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    return new Promise(function (resolve, reject) {   // plain-http pages: the old way
      var area = el("textarea", { "aria-hidden": "true", style: "position:fixed;opacity:0;" });
      area.value = text;
      shadow.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      shadow.removeChild(area);
      if (ok) resolve(); else reject(new Error("copy refused"));
    });
  }

  function sendFeedback(entry, body) {
    return fetch(API + "/feedback", {
      method: "POST", mode: "cors", credentials: "omit",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }).then(function (r) {
      if (!r.ok) throw new Error("status " + r.status);
      return r.json();
    });
  }

  function feedbackBody(entry, verdict) {
    return {
      question: entry.question, answer: entry.content, verdict: verdict, abstained: !!entry.abstained,
      generator: entry.generator || null,
      citations: entry.citations.map(function (c) {
        return { id: c.id, document_id: c.document_id, chunk_id: c.chunk_id, title: c.title, source: c.source,
                 text: c.text, start: c.start, end: c.end };
      }),
    };
  }

  /** A thumb (drawn here: emoji fonts are missing on some systems); `.down` turns it over. */
  function thumbIcon() {
    var icon = document.createElementNS(svgNS, "svg");
    icon.setAttribute("viewBox", "0 0 24 24");
    icon.setAttribute("aria-hidden", "true");
    var shape = document.createElementNS(svgNS, "path");
    shape.setAttribute("d", "M2 10h4v11H2z M8 10l4-8c1.5 0 2.5 1 2.2 2.6L13.5 9H20c1.1 0 2 .9 2 2l-2 8c-.3 1.2-1.2 2-2.4 2H8z");
    icon.appendChild(shape);
    return icon;
  }

  /** Copy, thumbs up / down (then an optional comment) under a finished answer. */
  function actions(entry) {
    var bar = el("div", { "class": "actions", "data-testid": "rag-actions" });
    var copy = el("button", { "class": "act", type: "button", "data-testid": "rag-copy", "aria-label": "Copy the answer" }, ["Copy"]);
    var up = el("button", { "class": "act thumb", type: "button", "data-testid": "rag-thumbs-up", "aria-pressed": "false",
      "aria-label": "Good answer", title: "Good answer" }, [thumbIcon()]);
    var down = el("button", { "class": "act thumb down", type: "button", "data-testid": "rag-thumbs-down", "aria-pressed": "false",
      "aria-label": "Bad answer", title: "Bad answer" }, [thumbIcon()]);
    var thanks = el("span", { "class": "thanks", "data-testid": "rag-feedback-status", role: "status" });
    bar.appendChild(copy); bar.appendChild(up); bar.appendChild(down); bar.appendChild(thanks);

    copy.addEventListener("click", function () {
      copyText(plainText(entry)).then(function () { copy.textContent = "Copied"; },
        function () { copy.textContent = "Copy failed"; });
      setTimeout(function () { copy.textContent = "Copy"; }, 2000);
    });

    function locked(verdict) {
      up.disabled = down.disabled = true;
      up.setAttribute("aria-pressed", String(verdict === "up"));
      down.setAttribute("aria-pressed", String(verdict === "down"));
    }

    function askComment() {
      var box = el("input", { type: "text", maxlength: "2000", "data-testid": "rag-feedback-comment",
        "aria-label": "Comment (optional)", placeholder: entry.feedback.verdict === "up" ? "What was good? (optional)" : "What was wrong? (optional)" });
      var send = el("button", { "class": "act", type: "button", "data-testid": "rag-feedback-send" }, ["Send"]);
      var row = el("div", { "class": "comment" }, [box, send]);
      bar.appendChild(row);
      function submit() {
        var comment = box.value.trim();
        if (!comment) return;
        send.disabled = box.disabled = true;
        var body = feedbackBody(entry, entry.feedback.verdict);
        body.comment = comment;
        body.supersedes = entry.feedback.id;
        sendFeedback(entry, body).then(function (ack) {
          entry.feedback = { verdict: entry.feedback.verdict, id: ack.id, commented: true };
          save();
          bar.removeChild(row);
          thanks.textContent = "Thanks for the comment.";
        }, function () {
          send.disabled = box.disabled = false;
          thanks.textContent = "The comment could not be sent; try again.";
        });
      }
      send.addEventListener("click", submit);
      box.addEventListener("keydown", function (e) { if (e.key === "Enter") { e.preventDefault(); submit(); } });
      box.focus();
    }

    function rate(verdict) {
      if (entry.feedback) return;
      locked(verdict);
      thanks.textContent = "Sending\u2026";
      sendFeedback(entry, feedbackBody(entry, verdict)).then(function (ack) {
        entry.feedback = { verdict: verdict, id: ack.id };
        save();
        thanks.textContent = "Thanks for the feedback.";
        askComment();
      }, function () {
        up.disabled = down.disabled = false;
        up.setAttribute("aria-pressed", "false");
        down.setAttribute("aria-pressed", "false");
        thanks.textContent = "The feedback could not be sent; try again.";
      });
    }
    up.addEventListener("click", function () { rate("up"); });
    down.addEventListener("click", function () { rate("down"); });
    if (entry.feedback) {
      locked(entry.feedback.verdict);
      thanks.textContent = "Thanks for the feedback.";
    }
    return bar;
  }

  /** Fills an assistant message node from a stored entry (a fresh answer, or one restored after a reload). */
  function renderEntry(node, entry) {
    var final = el("span", { "class": "text", "data-testid": "rag-answer-text" });
    renderAnswer(final, entry.content, entry.citations, entry.segments);
    if (entry.abstained) {
      node.classList.add("abstained");
      node.setAttribute("data-abstained", "true");
      node.appendChild(el("span", { "class": "label", "data-testid": "rag-abstained-label" }, ["Not in the documents"]));
    }
    node.appendChild(el("span", { "class": "sr" }, ["Answer: "]));
    node.appendChild(final);
    if (!entry.abstained && entry.citations.length) {
      var list = el("ol", { "class": "sources", "aria-label": "Sources", "data-testid": "rag-sources" });
      var seen = {};
      entry.citations.forEach(function (c) {
        var key = c.document_id || c.source;
        var name = (c.title || c.source || "document") + (c.source && c.title ? " \u2014 " + c.source : "");
        list.appendChild(el("li", null, [citeButton(c, "[" + c.id + "]"), " ", seen[key] ? "(same document)" : name]));
        seen[key] = true;
      });
      node.appendChild(list);
    }
    if (entry.fallback) {
      // In words for the reader; the technical reason is in the server's log and the API response.
      node.appendChild(el("span", { "class": "note", "data-testid": "rag-fallback" },
        ["The language model could not be used just now, so this answer was put together from the documents\u2019 own sentences."]));
    }
    node.appendChild(actions(entry));
    node.setAttribute("data-state", "done");
    node.removeAttribute("aria-busy");
    return final;
  }

  /** Cited passages travel with the citations, so the source view can show each quote in its context. */
  function withContext(citations, passages) {
    var byChunk = {};
    (passages || []).forEach(function (p) { if (p && p.chunk_id) byChunk[p.chunk_id] = p; });
    return citations.map(function (c) {
      var p = byChunk[c.chunk_id];
      var copy = {};
      for (var k in c) copy[k] = c[k];
      if (p && typeof p.text === "string" && p.start <= c.start && c.end <= p.end) copy.context = { text: p.text, start: p.start };
      return copy;
    });
  }

  function finish(a, data, question, passages) {
    var entry = {
      role: "assistant", question: question,
      content: typeof data.answer === "string" ? data.answer : a.streamed,
      citations: withContext(Array.isArray(data.citations) ? data.citations : [], passages || data.passages),
      abstained: !!data.abstained, generator: data.generator || null, fallback: !!data.fallback,
      segments: Array.isArray(data.segments) ? data.segments : null,
    };
    while (a.node.firstChild) a.node.removeChild(a.node.firstChild);   // built apart, then swapped in
    a.text = renderEntry(a.node, entry);
    say(entry.abstained ? "Not in the documents." : "Answer ready.");
    scrollDown();
    return entry;
  }

  function fail(a, userNode, question, message) {
    a.node.classList.add("error");
    a.node.setAttribute("data-state", "error");
    a.node.setAttribute("data-testid", "rag-error");
    a.node.setAttribute("role", "alert");
    a.node.removeAttribute("aria-busy");
    while (a.node.firstChild) a.node.removeChild(a.node.firstChild);
    a.node.appendChild(el("span", { "class": "label" }, ["Something went wrong"]));
    a.node.appendChild(document.createTextNode(message));
    var retry = el("button", { "class": "retry", type: "button", "data-testid": "rag-retry" }, ["Retry"]);
    retry.addEventListener("click", function () {
      if (busy) return;
      log.removeChild(a.node);   // the retried question takes the failed one's place
      if (userNode.isConnected) log.removeChild(userNode);
      ask(question);
    });
    a.node.appendChild(el("div", null, [retry]));
    scrollDown();
  }

  // -- the API ------------------------------------------------------------------------------
  function history() {
    return entries.map(function (e) { return { role: e.role, content: e.content.slice(0, MAX_MESSAGE_CHARS) }; });
  }

  /** The request, with as many recent turns as fit in MAX_BODY_BYTES of UTF-8 (the server counts bytes). */
  function requestBody(question) {
    var turns = history().slice(-MAX_HISTORY);
    var body = JSON.stringify({ question: question, top_k: TOP_K, stream: true, history: turns });
    while (utf8.encode(body).length > MAX_BODY_BYTES && turns.length) {
      turns = turns.slice(2);
      body = JSON.stringify({ question: question, top_k: TOP_K, stream: true, history: turns });
    }
    return body;
  }

  function errorDetail(response) {
    return response.text().then(function (text) {
      try {
        var j = JSON.parse(text);
        if (j && typeof j.detail === "string") return j.detail;
        if (j && j.detail) return JSON.stringify(j.detail);
      } catch (e) { /* not JSON */ }
      return (text || response.statusText || "").slice(0, 300);
    }, function () { return response.statusText || ""; });
  }

  /** Reads Server-Sent Events from a fetch body; calls onEvent(name, dataString) per event. */
  function readEvents(body, onEvent) {
    var reader = body.getReader();
    var decoder = new TextDecoder("utf-8");
    var buffer = "", name = "", data = [], hasData = false;

    function line(l) {
      if (l === "") {
        if (hasData) onEvent(name || "message", data.join("\n"));
        name = ""; data = []; hasData = false;
        return;
      }
      if (l.charAt(0) === ":") return;
      var i = l.indexOf(":");
      var field = i < 0 ? l : l.slice(0, i);
      var value = i < 0 ? "" : l.slice(i + 1);
      if (value.charAt(0) === " ") value = value.slice(1);
      if (field === "event") name = value;
      else if (field === "data") { data.push(value); hasData = true; }
    }

    function drain(final) {
      var re = /\r\n|\r|\n/g, start = 0, m;
      while ((m = re.exec(buffer))) {
        if (m[0] === "\r" && m.index === buffer.length - 1 && !final) break;   // maybe half of \r\n
        line(buffer.slice(start, m.index));
        start = m.index + m[0].length;
      }
      buffer = buffer.slice(start);
      if (final && buffer) { line(buffer); buffer = ""; }
      if (final) line("");
    }

    function pump() {
      return reader.read().then(function (r) {
        if (r.done) { buffer += decoder.decode(); drain(true); return; }
        buffer += decoder.decode(r.value, { stream: true });
        drain(false);
        return pump();
      });
    }
    return pump();
  }

  function ask(question) {
    busy = true;
    sendBtn.disabled = true;
    sendBtn.setAttribute("aria-disabled", "true");
    var userNode = addUser(question);
    var a = addAssistant();
    say("Answering\u2026");
    var body = requestBody(question);
    var outcome = null;   // {entry} once citations arrived, or {error}
    var passages = null;

    function onEvent(name, raw) {
      if (outcome) return;   // the answer is complete (or failed): nothing after it changes it
      var data;
      try { data = JSON.parse(raw); } catch (e) { data = {}; }
      if (name === "passages" && Array.isArray(data.passages)) {
        passages = data.passages;
      } else if (name === "delta" && typeof data.text === "string") {
        a.streamed += data.text;
        a.text.appendChild(document.createTextNode(data.text));
        scrollDown();
      } else if (name === "citations") {
        outcome = { entry: finish(a, data, question, passages) };
      } else if (name === "error") {
        outcome = { error: data.detail || "the answer could not be completed" };
      }
    }

    return fetch(API + "/ask", {
      method: "POST",
      mode: "cors",
      credentials: "omit",
      headers: { "Content-Type": "application/json", "Accept": "text/event-stream" },
      body: body,
    }).then(function (response) {
      if (!response.ok) {
        return errorDetail(response).then(function (detail) {
          outcome = { error: "The service answered " + response.status + (detail ? ": " + detail : ".") };
        });
      }
      var type = response.headers.get("content-type") || "";
      if (type.indexOf("text/event-stream") < 0) {   // a server that answered with plain JSON
        return response.json().then(function (data) {
          outcome = { entry: finish(a, data, question, data.passages) };
        });
      }
      if (!response.body) throw new Error("this browser cannot read streamed responses");
      return readEvents(response.body, onEvent);
    }).catch(function (err) {
      if (!outcome) {
        var network = err && err.name === "TypeError";
        outcome = {
          error: network
            ? "Could not reach the question service at " + API + " (network error, or this page's origin is not allowed to use it). Your question is kept: press Retry."
            : "The answer could not be read: " + (err && err.message ? err.message : String(err)),
        };
      }
    }).then(function () {
      if (!outcome) outcome = { error: "The answer was cut off before it finished. Please try again." };
      if (outcome.error) {
        fail(a, userNode, question, outcome.error);
        say("Error: " + outcome.error);
      } else {
        entries.push({ role: "user", content: question });
        entries.push(outcome.entry);
        save();
      }
      busy = false;
      sendBtn.disabled = false;
      sendBtn.removeAttribute("aria-disabled");
      var active = shadow.activeElement;   // give focus back to the input only if sending took it away
      if (isOpen() && sourcePanel.hasAttribute("hidden") && (!active || active === sendBtn || !active.isConnected)) input.focus();
    });
  }

  function newConversation() {
    if (busy) return;
    closeSource(false);
    entries = [];
    save();
    greeting();
    say("New conversation.");
    input.focus();
  }

  function restoreConversation() {
    var saved = restore();
    greeting();
    if (!saved) return false;
    saved.entries.forEach(function (e) {
      if (!e || typeof e.content !== "string") return;
      if (e.role === "user") {
        addUser(e.content);
        entries.push({ role: "user", content: e.content });
      } else if (e.role === "assistant") {
        var entry = { role: "assistant", question: e.question || "", content: e.content,
          citations: Array.isArray(e.citations) ? e.citations : [], abstained: !!e.abstained,
          generator: e.generator || null, fallback: !!e.fallback, feedback: e.feedback || null,
          segments: Array.isArray(e.segments) ? e.segments : null };
        var node = el("div", { "class": "msg assistant", "data-testid": "rag-answer" });
        renderEntry(node, entry);
        log.appendChild(node);
        entries.push(entry);
      }
    });
    return !!saved.open;
  }

  // -- events ---------------------------------------------------------------------------------
  launcher.addEventListener("click", openPanel);
  closeBtn.addEventListener("click", closePanel);
  newBtn.addEventListener("click", newConversation);
  sourceBack.addEventListener("click", function () { closeSource(true); });
  sourceOpen.addEventListener("click", openWholeDocument);

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var q = input.value.trim();
    if (!q || busy) return;
    input.value = "";
    ask(q);
  });

  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      if (typeof form.requestSubmit === "function") form.requestSubmit();
      else form.dispatchEvent(new Event("submit", { cancelable: true }));
    }
  });

  panel.addEventListener("keydown", function (e) {
    if (e.key === "Escape") {
      e.preventDefault();
      e.stopPropagation();
      if (!closeSource(true)) closePanel();
    }
  });

  var reopen = restoreConversation();

  function mount() {
    if (!host.isConnected) document.body.appendChild(host);
    if (reopen) {
      panel.removeAttribute("hidden");
      launcher.hidden = true;
      launcher.setAttribute("aria-expanded", "true");
      scrollDown();
    }
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();

/*! RAG chat widget: ask questions about the documents, answers stream in with checkable citations.
 *
 * Embed:  <script src="https://host/widget.js" data-api="https://host" defer></script>
 *   data-api    base URL of the question-answering API (default: the origin this script came from)
 *   data-title  panel heading (default "Ask the documents")
 *   data-top-k  passages per question (1-50, default 5)
 *
 * Plain JavaScript, no dependencies, no build step. Everything lives in a shadow DOM, so the page's
 * styles do not reach the widget and the widget's styles do not reach the page. Server data (answers,
 * quotes, titles, sources) is only ever inserted as text nodes, never parsed as HTML. The conversation
 * is kept here, in the page, and sent as `history` with each question; no secret is needed.
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

  var API = ((script.getAttribute("data-api") || new URL(script.src, location.href).origin) + "").replace(/\/+$/, "");
  var TITLE = script.getAttribute("data-title") || "Ask the documents";
  var TOP_K = Math.min(50, Math.max(1, parseInt(script.getAttribute("data-top-k") || "5", 10) || 5));
  var MAX_HISTORY = 20;            // messages sent back as context (the API accepts up to 50)
  var MAX_BODY_CHARS = 48000;      // stay well under the API's request body limit
  var MARKER = /\[(\d+(?:\s*,\s*\d+)*)\]/g;

  var CSS = [
    ":host{all:initial !important;}",
    "*,*::before,*::after{box-sizing:border-box;}",
    ".root{position:fixed;right:16px;bottom:16px;z-index:2147483000;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1b1f24;}",
    "button{font:inherit;cursor:pointer;}",
    "button:focus-visible,textarea:focus-visible,[tabindex]:focus-visible{outline:3px solid #f5a623;outline-offset:2px;}",
    ".launcher{display:flex;align-items:center;gap:8px;border:0;border-radius:999px;padding:12px 18px;background:#1f5fbf;color:#fff;font-weight:600;box-shadow:0 4px 14px rgba(0,0,0,.25);}",
    ".launcher:hover{background:#184c99;}",
    ".launcher svg{width:20px;height:20px;fill:currentColor;}",
    ".panel{position:fixed;right:16px;bottom:16px;width:min(400px,calc(100vw - 16px));height:min(620px,calc(100vh - 32px));display:flex;flex-direction:column;background:#fff;border:1px solid #d0d7de;border-radius:12px;box-shadow:0 10px 32px rgba(0,0,0,.28);overflow:hidden;}",
    ".panel[hidden]{display:none;}",
    "@media (max-width:480px){.panel{right:8px;left:8px;bottom:8px;width:auto;height:calc(100vh - 16px);} .root{right:8px;bottom:8px;}}",
    ".head{display:flex;align-items:center;justify-content:space-between;gap:8px;padding:10px 12px 10px 16px;background:#1f5fbf;color:#fff;}",
    ".head h2{margin:0;font-size:16px;font-weight:600;}",
    ".icon{border:0;background:transparent;color:inherit;font-size:22px;line-height:1;width:36px;height:36px;border-radius:8px;}",
    ".icon:hover{background:rgba(255,255,255,.18);}",
    ".body{position:relative;flex:1;min-height:0;display:flex;flex-direction:column;}",
    ".log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:10px;}",
    ".hint{color:#57606a;font-size:14px;margin:0;}",
    ".msg{max-width:92%;padding:8px 12px;border-radius:12px;white-space:pre-wrap;overflow-wrap:anywhere;}",
    ".user{align-self:flex-end;background:#1f5fbf;color:#fff;border-bottom-right-radius:4px;}",
    ".assistant{align-self:flex-start;background:#f0f3f6;border-bottom-left-radius:4px;}",
    ".assistant[data-state=streaming] .text::after{content:'\\258D';animation:blink 1s steps(1) infinite;color:#1f5fbf;}",
    "@keyframes blink{50%{opacity:0;}}",
    ".assistant.abstained{background:#fafafa;border:1px dashed #afb8c1;color:#57606a;font-style:italic;}",
    ".label{display:block;font-style:normal;font-size:12px;font-weight:700;letter-spacing:.03em;text-transform:uppercase;color:#6e7781;margin-bottom:2px;}",
    ".assistant.error{background:#fff1f0;border:1px solid #f5c2c0;color:#8c1d18;}",
    ".cite{display:inline;border:1px solid #9db7e0;background:#e7effb;color:#1f4f99;border-radius:6px;padding:0 4px;margin:0 1px;font-size:13px;font-weight:600;vertical-align:baseline;}",
    ".cite:hover,.cite[aria-expanded=true]{background:#1f5fbf;color:#fff;}",
    ".sources{margin:6px 0 0;padding:6px 0 0;border-top:1px solid #d0d7de;list-style:none;font-size:13px;white-space:normal;}",
    ".sources li{margin:2px 0;}",
    ".sources button{border:0;background:none;padding:0;color:#1f4f99;text-align:left;text-decoration:underline;}",
    ".note{display:block;font-size:12px;color:#6e7781;margin-top:4px;white-space:normal;}",
    ".source{position:absolute;inset:0;background:#fff;display:flex;flex-direction:column;padding:12px 16px;overflow-y:auto;gap:8px;}",
    ".source[hidden]{display:none;}",
    ".source h3{margin:0;font-size:15px;}",
    ".source .doc{margin:0;font-size:13px;color:#57606a;overflow-wrap:anywhere;}",
    ".source .doc code{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace;}",
    ".source blockquote{margin:0;padding:8px 12px;border-left:4px solid #1f5fbf;background:#f6f8fa;white-space:pre-wrap;overflow-wrap:anywhere;}",
    ".back{align-self:flex-start;border:1px solid #d0d7de;background:#f6f8fa;border-radius:8px;padding:6px 12px;}",
    ".form{display:flex;gap:8px;padding:10px;border-top:1px solid #d0d7de;background:#fff;}",
    ".form textarea{flex:1;min-width:0;resize:none;font:inherit;padding:8px 10px;border:1px solid #afb8c1;border-radius:8px;height:42px;max-height:120px;color:#1b1f24;background:#fff;}",
    ".send{border:0;border-radius:8px;padding:0 16px;background:#1f5fbf;color:#fff;font-weight:600;}",
    ".send:disabled{background:#8c959f;cursor:progress;}",
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
  style.textContent = CSS;
  shadow.appendChild(style);

  var root = el("div", { "class": "root", "data-testid": "rag-widget" });
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

  var heading = el("h2", { id: uid + "-title" }, [TITLE]);
  var closeBtn = el("button", { "class": "icon", type: "button", "aria-label": "Close chat", "data-testid": "rag-close" }, ["\u00d7"]);
  var log = el("div", {
    "class": "log", role: "log", "aria-live": "polite", "aria-relevant": "additions text",
    "aria-label": "Conversation", "data-testid": "rag-log", tabindex: "0",
  }, [el("p", { "class": "hint" }, ["Ask a question; answers cite the documents they come from. Click a [n] to see the quoted source."])]);

  var sourceTitle = el("h3", { id: uid + "-src-title", "data-testid": "rag-source-title", tabindex: "-1" });
  var sourceDoc = el("code", { "data-testid": "rag-source-source" });
  var sourceQuote = el("blockquote", { "data-testid": "rag-source-quote" });
  var sourceBack = el("button", { "class": "back", type: "button", "data-testid": "rag-source-close" }, ["\u2190 Back to the answer"]);
  var sourceLabel = el("span", { "class": "label", "data-testid": "rag-source-label" });
  var sourcePanel = el("section", {
    "class": "source", role: "region", "aria-labelledby": uid + "-src-title", "data-testid": "rag-source", hidden: "",
  }, [sourceBack, sourceLabel, sourceTitle, el("p", { "class": "doc" }, ["Document: ", sourceDoc]), sourceQuote]);

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
    el("div", { "class": "head" }, [heading, closeBtn]),
    el("div", { "class": "body" }, [log, sourcePanel]),
    form, status,
  ]);
  root.appendChild(launcher);
  root.appendChild(panel);
  shadow.appendChild(root);

  // -- state --------------------------------------------------------------------------------
  var history = [];          // [{role, content}], oldest first: completed turns only
  var busy = false;
  var openedFrom = null;     // the citation button that opened the source panel

  function isOpen() { return !panel.hasAttribute("hidden"); }

  function openPanel() {
    panel.removeAttribute("hidden");
    launcher.hidden = true;
    launcher.setAttribute("aria-expanded", "true");
    input.focus();
  }

  function closePanel() {
    closeSource(false);
    panel.setAttribute("hidden", "");
    launcher.hidden = false;
    launcher.setAttribute("aria-expanded", "false");
    launcher.focus();
  }

  function showSource(citation, button) {
    if (openedFrom && openedFrom !== button) openedFrom.setAttribute("aria-expanded", "false");
    openedFrom = button;
    if (button) button.setAttribute("aria-expanded", "true");
    sourceLabel.textContent = "Source [" + citation.id + "]";
    sourceTitle.textContent = citation.title || "(untitled document)";
    sourceDoc.textContent = citation.source || citation.document_id || "";
    sourceQuote.textContent = citation.text || "";
    sourcePanel.setAttribute("data-citation", String(citation.id));
    sourcePanel.removeAttribute("hidden");
    sourceTitle.focus();
  }

  function closeSource(restoreFocus) {
    if (sourcePanel.hasAttribute("hidden")) return false;
    sourcePanel.setAttribute("hidden", "");
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

  function addUser(text) {
    var m = el("div", { "class": "msg user", "data-testid": "rag-msg-user" }, [el("span", { "class": "sr" }, ["You: "]), text]);
    log.appendChild(m);
    scrollDown();
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

  function finish(a, data) {
    var answer = typeof data.answer === "string" ? data.answer : a.streamed;
    var citations = Array.isArray(data.citations) ? data.citations : [];
    var final = el("span", { "class": "text", "data-testid": "rag-answer-text" });
    renderAnswer(final, answer, citations, data.segments);   // built apart, then swapped in: one change for the screen reader
    a.node.replaceChild(final, a.text);
    a.text = final;
    if (data.abstained) {
      a.node.classList.add("abstained");
      a.node.setAttribute("data-abstained", "true");
      a.node.insertBefore(el("span", { "class": "label", "data-testid": "rag-abstained-label" }, ["Not in the documents"]), a.node.firstChild);
    } else if (citations.length) {
      var list = el("ol", { "class": "sources", "aria-label": "Sources", "data-testid": "rag-sources" });
      var seen = {};
      citations.forEach(function (c) {
        var key = c.document_id || c.source;
        var name = (c.title || c.source || "document") + (c.source && c.title ? " \u2014 " + c.source : "");
        list.appendChild(el("li", null, [citeButton(c, "[" + c.id + "]"), " ", seen[key] ? "(same document)" : name]));
        seen[key] = true;
      });
      a.node.appendChild(list);
    }
    if (data.fallback && typeof data.fallback === "object") {
      a.node.appendChild(el("span", { "class": "note", "data-testid": "rag-fallback" },
        ["Answered by the " + (data.generator || "extractive") + " fallback (" + (data.fallback.reason || "the language model failed") + ")."]));
    }
    a.node.setAttribute("data-state", "done");
    a.node.removeAttribute("aria-busy");
    say(data.abstained ? "Not in the documents." : "Answer ready.");
    scrollDown();
    return answer;
  }

  function fail(a, message) {
    a.node.classList.add("error");
    a.node.setAttribute("data-state", "error");
    a.node.setAttribute("data-testid", "rag-error");
    a.node.setAttribute("role", "alert");
    a.node.removeAttribute("aria-busy");
    while (a.node.firstChild) a.node.removeChild(a.node.firstChild);
    a.node.appendChild(el("span", { "class": "label" }, ["Something went wrong"]));
    a.node.appendChild(document.createTextNode(message));
    scrollDown();
  }

  // -- the API ------------------------------------------------------------------------------
  function requestBody(question) {
    var turns = history.slice(-MAX_HISTORY);
    var body = JSON.stringify({ question: question, top_k: TOP_K, stream: true, history: turns });
    while (body.length > MAX_BODY_CHARS && turns.length) {
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
    addUser(question);
    var a = addAssistant();
    say("Answering\u2026");
    var body = requestBody(question);
    var outcome = null;   // {answer, abstained} once citations arrived, or {error}

    function onEvent(name, raw) {
      if (outcome) return;   // the answer is complete (or failed): nothing after it changes it
      var data;
      try { data = JSON.parse(raw); } catch (e) { data = {}; }
      if (name === "delta" && typeof data.text === "string") {
        a.streamed += data.text;
        a.text.appendChild(document.createTextNode(data.text));
        scrollDown();
      } else if (name === "citations") {
        outcome = { answer: finish(a, data), abstained: !!data.abstained };
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
          outcome = { answer: finish(a, data), abstained: !!data.abstained };
        });
      }
      if (!response.body) throw new Error("this browser cannot read streamed responses");
      return readEvents(response.body, onEvent);
    }).catch(function (err) {
      if (!outcome) {
        var network = err && err.name === "TypeError";
        outcome = {
          error: network
            ? "Could not reach the question service at " + API + " (network error, or this page's origin is not allowed to use it). Please try again."
            : "The answer could not be read: " + (err && err.message ? err.message : String(err)),
        };
      }
    }).then(function () {
      if (!outcome) outcome = { error: "The answer was cut off before it finished. Please try again." };
      if (outcome.error) {
        fail(a, outcome.error);
        say("Error: " + outcome.error);
      } else {
        history.push({ role: "user", content: question });
        history.push({ role: "assistant", content: outcome.answer });
      }
      busy = false;
      sendBtn.disabled = false;
      sendBtn.removeAttribute("aria-disabled");
      var active = shadow.activeElement;   // give focus back to the input only if sending took it away
      if (isOpen() && sourcePanel.hasAttribute("hidden") && (!active || active === sendBtn)) input.focus();
    });
  }

  // -- events ---------------------------------------------------------------------------------
  launcher.addEventListener("click", openPanel);
  closeBtn.addEventListener("click", closePanel);
  sourceBack.addEventListener("click", function () { closeSource(true); });

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

  function mount() {
    if (!host.isConnected) document.body.appendChild(host);
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();

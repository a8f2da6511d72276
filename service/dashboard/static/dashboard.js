// Switchboard dashboard: JSON writes to the REST API, errors shown to the user, and live refresh from the event stream.
(function () {
  "use strict";

  function randomKey() {
    // crypto.randomUUID needs a secure context; getRandomValues works on plain-http LAN installs too.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // This tab is one presence client of the operator: its id lives as long as the tab (sessionStorage), the
  // event stream holds it (closing the tab ends it), activity is told by a heartbeat at most every 30 s, and
  // choosing online from this tab makes this client the online one.
  // Where the site mounts Switchboard (PATH_PREFIX): every path below starts with it.
  const base = document.body.dataset.base || "";

  let tab = sessionStorage.getItem("sb-client");
  if (!tab) {
    tab = "web-" + randomKey();
    sessionStorage.setItem("sb-client", tab);
  }
  document.addEventListener("htmx:configRequest", function (evt) {
    if (evt.detail.path === base + "/api/v1/me/presence") evt.detail.parameters.clientId = tab;
  });

  // Forms post JSON (the REST API's format); forms marked data-idempotent send an Idempotency-Key,
  // kept until the send succeeds so a retried click can never send twice.
  htmx.defineExtension("sb-json", {
    onEvent: function (name, evt) {
      if (name !== "htmx:configRequest") return;
      evt.detail.headers["Content-Type"] = "application/json";
      const elt = evt.detail.elt;
      if (elt.hasAttribute("data-idempotent")) {
        elt.dataset.idempotencyKey = elt.dataset.idempotencyKey || randomKey();
        evt.detail.headers["Idempotency-Key"] = elt.dataset.idempotencyKey;
      }
    },
    encodeParameters: function (xhr, parameters, elt) {
      xhr.overrideMimeType("text/json");
      const fields = Object.fromEntries(parameters);
      if (elt.querySelector("[data-attach]")) {
        // The files were uploaded when picked; the reply names them.
        delete fields.file;
        fields.attachmentIds = attachedIds(elt);
      }
      return JSON.stringify(elt.hasAttribute("data-transfer") ? transferBody(fields) : fields);
    },
  });

  // Files picked in the reply form go up at once (POST .../attachments, checked by the server against the
  // team's limits); the reply then sends their ids. A refused file shows the server's reason.
  function attachedIds(form) {
    return Array.from(form.querySelectorAll("[data-attached] [data-attachment-id]"), (li) => li.dataset.attachmentId);
  }

  document.addEventListener("change", async function (evt) {
    const input = evt.target;
    if (!input.matches || !input.matches("input[type=file][data-attach]")) return;
    const list = input.form.querySelector("[data-attached]");
    const headers = JSON.parse(document.body.getAttribute("hx-headers") || "{}");
    for (const file of Array.from(input.files)) {
      const body = new FormData();
      body.append("file", file, file.name);
      const response = await fetch(input.dataset.attach, { method: "POST", body: body, headers: headers });
      let answer = {};
      try {
        answer = await response.json();
      } catch (ignored) {
        // Not JSON: the status says enough.
      }
      if (!response.ok) {
        showError(answer.detail || "The file was not accepted (" + response.status + ")");
        continue;
      }
      const item = document.createElement("li");
      item.dataset.attachmentId = answer.id;
      item.textContent = answer.filename;
      list.appendChild(item);
    }
    input.value = "";
  });

  document.addEventListener("reset", function (evt) {
    const list = evt.target.querySelector && evt.target.querySelector("[data-attached]");
    if (list) list.replaceChildren();
  });

  // The transfer form picks an operator or a team in one list ("operator:<id>" or "team:<id>"); the API takes
  // operatorId or teamId, a boolean overrideCapacity, and no note rather than an empty one.
  function transferBody(fields) {
    const [kind, id] = fields.target.split(":");
    const body = { [kind === "team" ? "teamId" : "operatorId"]: id };
    if (fields.note) body.note = fields.note;
    if (fields.overrideCapacity) body.overrideCapacity = true;
    return body;
  }

  // A <select> whose options refresh live keeps the choice the user already made.
  document.addEventListener("htmx:beforeSwap", function (evt) {
    const target = evt.detail.target;
    if (target.tagName === "SELECT") target.dataset.kept = target.value;
  });
  document.addEventListener("htmx:afterSwap", function (evt) {
    const target = evt.detail.target;
    if (target.tagName !== "SELECT") return;
    target.value = target.dataset.kept || "";
    if (target.selectedIndex < 0 || target.selectedOptions[0].disabled) target.value = "";
  });

  // A tag's colour (#rrggbb, checked by the API) on its chip's edge: set from JS, as the CSP allows no inline styles.
  function colourTags(root) {
    root.querySelectorAll(".tag[data-color]").forEach((chip) => { chip.style.borderLeftColor = chip.dataset.color; });
  }
  document.addEventListener("DOMContentLoaded", () => colourTags(document));
  document.addEventListener("htmx:afterSwap", (evt) => colourTags(evt.detail.target));

  const flash = () => document.getElementById("flash");

  document.addEventListener("htmx:afterRequest", function (evt) {
    const elt = evt.detail.elt;
    if (!evt.detail.successful || evt.detail.requestConfig.verb === "get") return;
    if (flash()) flash().hidden = true;
    if (elt.tagName === "FORM") {
      elt.reset();
      delete elt.dataset.idempotencyKey;
    }
    htmx.trigger(document.body, "sb:refresh");
  });

  document.addEventListener("htmx:responseError", function (evt) {
    let detail = "Something went wrong (" + evt.detail.xhr.status + ")";
    try {
      detail = JSON.parse(evt.detail.xhr.responseText).detail || detail;
    } catch (ignored) {
      // Not problem details: keep the generic text.
    }
    showError(detail);
  });

  // Canned-response picker: "/shortcut" typed at the start of the reply box or after whitespace lists the
  // caller's responses by that prefix; picking one replaces "/shortcut" with its text rendered for this conversation.
  function csrfHeaders() {
    const headers = JSON.parse(document.body.getAttribute("hx-headers") || "{}");
    return Object.assign({ "Content-Type": "application/json" }, headers);
  }

  function showError(text) {
    if (flash()) {
      flash().textContent = text;
      flash().hidden = false;
    }
  }

  async function problemDetail(response) {
    try {
      return (await response.json()).detail || "Something went wrong (" + response.status + ")";
    } catch (ignored) {
      return "Something went wrong (" + response.status + ")";
    }
  }

  // For the page scripts (canned.js, profile.js): a JSON call to the REST API with the session's CSRF token.
  // Resolves to the answer's JSON (null for 204); rejects with an Error whose message is the problem detail.
  async function call(method, path, body) {
    const response = await fetch(base + path, {
      method: method,
      headers: csrfHeaders(),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!response.ok) throw new Error(await problemDetail(response));
    return response.status === 204 ? null : response.json();
  }

  window.Switchboard = {
    base: base,
    call: call,
    showError: showError,
    refresh: function () { htmx.trigger(document.body, "sb:refresh"); },
  };

  function setUpPicker(box, list) {
    let typed = null; // {start, end, prefix} of the "/shortcut" before the caret, or null
    let asked = 0; // newest lookup; older answers arriving late are dropped

    function close() {
      typed = null;
      list.hidden = true;
      list.replaceChildren();
    }

    function choices() {
      return Array.from(list.children);
    }

    function select(index) {
      choices().forEach((item, i) => item.setAttribute("aria-selected", String(i === index)));
    }

    async function pick(item) {
      const where = typed;
      close();
      const response = await fetch(base + "/api/v1/canned-responses/" + item.dataset.canned + "/render", {
        method: "POST",
        headers: csrfHeaders(),
        body: JSON.stringify({ conversationId: box.dataset.conversation }),
      });
      if (!response.ok) return showError(await problemDetail(response));
      const text = (await response.json()).body;
      box.setRangeText(text, where.start, where.end, "end");
      box.focus();
    }

    async function lookUp() {
      const before = box.value.slice(0, box.selectionStart);
      const match = /(^|\s)\/([A-Za-z0-9_-]{0,32})$/.exec(before);
      if (!match) return close();
      typed = { start: before.length - match[2].length - 1, end: before.length, prefix: match[2] };
      const lookup = ++asked;
      const query = match[2] ? "?prefix=" + encodeURIComponent(match[2]) : "";
      const response = await fetch(base + "/api/v1/canned-responses" + query, { headers: { Accept: "application/json" } });
      if (lookup !== asked || typed === null) return;
      if (!response.ok) return showError(await problemDetail(response));
      const items = (await response.json()).items;
      list.replaceChildren(
        ...items.map(function (canned) {
          const item = document.createElement("li");
          item.setAttribute("role", "option");
          item.dataset.canned = canned.id;
          item.textContent = "/" + canned.shortcut + " — " + canned.title;
          item.addEventListener("mousedown", function (evt) {
            evt.preventDefault(); // keep the caret in the box
            pick(item);
          });
          return item;
        }),
      );
      list.hidden = items.length === 0;
      select(0);
    }

    box.addEventListener("input", lookUp);
    box.addEventListener("blur", close);
    box.addEventListener("keydown", function (evt) {
      if (list.hidden) return;
      const items = choices();
      const current = items.findIndex((item) => item.getAttribute("aria-selected") === "true");
      if (evt.key === "ArrowDown" || evt.key === "ArrowUp") {
        evt.preventDefault();
        select((current + (evt.key === "ArrowDown" ? 1 : items.length - 1)) % items.length);
      } else if (evt.key === "Enter" || evt.key === "Tab") {
        evt.preventDefault();
        pick(items[Math.max(current, 0)]);
      } else if (evt.key === "Escape") {
        close();
      }
    });
  }

  // Edit on one of your own messages swaps its text for a form (saved through the REST API like any other form).
  function showEditForm(message, editing) {
    message.querySelector("form.edit-message").hidden = !editing;
    const text = message.querySelector("p");
    if (text) text.hidden = editing;
    message.querySelector(".message-actions").hidden = editing;
    if (editing) message.querySelector("form.edit-message textarea").focus();
  }
  // While an edit form is open, a live refresh of the thread would replace it and lose the edit: the refresh
  // waits, and runs once the edit is saved or cancelled.
  function endEdit(message) {
    showEditForm(message, false);
    const thread = message.closest("#thread");
    if (thread && thread.dataset.stale) {
      delete thread.dataset.stale;
      htmx.trigger(document.body, "sb:refresh");
    }
  }
  document.addEventListener("click", function (evt) {
    const button = evt.target.closest("[data-edit-message], [data-cancel-edit]");
    if (!button) return;
    const message = button.closest(".message");
    if (button.hasAttribute("data-edit-message")) showEditForm(message, true);
    else endEdit(message);
  });
  document.addEventListener("htmx:afterRequest", function (evt) {
    const form = evt.detail.elt;
    if (evt.detail.successful && form.matches && form.matches("form.edit-message")) endEdit(form.closest(".message"));
  });
  document.addEventListener("htmx:beforeSwap", function (evt) {
    const thread = evt.detail.target;
    if (thread.id !== "thread" || !thread.querySelector("form.edit-message:not([hidden])")) return;
    evt.detail.shouldSwap = false;
    thread.dataset.stale = "true";
  });

  // The conversation page, both ways: the visitor's messages are marked read while the page is in view (on
  // opening it, when one arrives, when the tab comes back), the visitor's typing shows above the reply box,
  // and the operator's typing reaches the widget (once when they start, again every 2 s while they type, and
  // "stopped" 4 s after their last keystroke).
  const TYPING_REPEAT_MS = 2000;
  const TYPING_STOP_MS = 4000;
  // The widget sends no "stopped": the gateway forwards its keystrokes every 2 s, so silence means it stopped.
  const VISITOR_TYPING_SHOWN_MS = 6000;

  function setUpConversation(box) {
    const id = box.dataset.conversation;
    const url = "/api/v1/conversations/" + encodeURIComponent(id); // for call(), which adds the base
    const markRead = function () {
      if (document.visibilityState === "visible") call("POST", url + "/read").catch((error) => showError(error.message));
    };
    markRead();
    document.addEventListener("visibilitychange", markRead);

    const note = document.getElementById("visitor-typing");
    let hideNote = null;
    const showTyping = function (isTyping) {
      clearTimeout(hideNote);
      note.hidden = !isTyping;
      if (isTyping) hideNote = setTimeout(function () { note.hidden = true; }, VISITOR_TYPING_SHOWN_MS);
    };
    document.body.addEventListener("sb:typing", function (evt) {
      if (evt.detail.conversationId === id) showTyping(evt.detail.isTyping);
    });
    document.body.addEventListener("sb:event", function (evt) {
      if (evt.detail.kind !== "message.created" || evt.detail.conversationId !== id) return;
      if (evt.detail.sender === "visitor") {
        showTyping(false);
        markRead();
      }
    });

    let sentAt = 0;
    let stop = null;
    const typing = function (isTyping) {
      call("POST", url + "/typing", { isTyping: isTyping }).catch(function () {}); // best effort, like the widget's
    };
    box.addEventListener("input", function () {
      if (Date.now() - sentAt >= TYPING_REPEAT_MS) {
        sentAt = Date.now();
        typing(true);
      }
      clearTimeout(stop);
      stop = setTimeout(function () { sentAt = 0; typing(false); }, TYPING_STOP_MS);
    });
    box.form.addEventListener("submit", function () {
      clearTimeout(stop); // the reply itself clears the widget's indicator
      sentAt = 0;
    });
  }

  // Every event kind of the operator stream (docs/realtime.md) becomes one "sb:event" on <body>;
  // the page's fragments decide which ones concern them. The visitor's typing is "sb:typing" instead:
  // it comes every 2 s while they type and refreshes nothing.
  const KINDS = [
    "conversation.queued", "conversation.assigned", "conversation.transferred", "conversation.closed",
    "conversation.reopened", "conversation.rated", "message.created", "message.edited", "message.deleted",
    "message.receipt", "note.created", "presence.changed", "ai.takeover", "ai.state_changed",
    "screenshot.captured", "sla.at_risk", "sla.breached", "leads.alerted",
  ];
  document.addEventListener("DOMContentLoaded", function () {
    const box = document.getElementById("reply-content");
    const list = document.getElementById("canned-picker");
    if (box && list) setUpPicker(box, list);
    let toldAt = Date.now(); // opening the stream counted as activity
    function tellActivity() {
      const now = Date.now();
      if (now - toldAt < 30000) return;
      toldAt = now;
      fetch(base + "/api/v1/me/heartbeat", {
        method: "POST",
        headers: csrfHeaders(),
        body: JSON.stringify({ clientId: tab, kind: "web", active: true }),
      });
    }
    for (const kind of ["keydown", "pointerdown", "scroll"]) {
      document.addEventListener(kind, tellActivity, { passive: true });
    }
    if (box) setUpConversation(box);
    const source = new EventSource(base + "/api/v1/events?clientId=" + encodeURIComponent(tab));
    for (const kind of KINDS) {
      source.addEventListener(kind, function (message) {
        const event = JSON.parse(message.data);
        htmx.trigger(document.body, "sb:event", {
          kind: event.kind, conversationId: event.conversationId, sender: event.data.sender,
        });
      });
    }
    source.addEventListener("visitor.typing", function (message) {
      const event = JSON.parse(message.data);
      htmx.trigger(document.body, "sb:typing", { conversationId: event.conversationId, isTyping: event.data.isTyping });
    });
    source.addEventListener("open", function () { document.body.dataset.live = "open"; });
  });
})();

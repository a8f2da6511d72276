// Switchboard dashboard: JSON writes to the REST API, errors shown to the user, and live refresh from the event stream.
(function () {
  "use strict";

  function randomKey() {
    // crypto.randomUUID needs a secure context; getRandomValues works on plain-http LAN installs too.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

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
    encodeParameters: function (xhr, parameters) {
      xhr.overrideMimeType("text/json");
      return JSON.stringify(Object.fromEntries(parameters));
    },
  });

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
    if (flash()) {
      flash().textContent = detail;
      flash().hidden = false;
    }
  });

  // Every event kind of the operator stream (docs/realtime.md) becomes one "sb:event" on <body>;
  // the page's fragments decide which ones concern them.
  const KINDS = [
    "conversation.queued", "conversation.assigned", "conversation.transferred", "conversation.closed",
    "conversation.reopened", "message.created", "note.created", "presence.changed", "ai.takeover",
    "ai.state_changed",
  ];
  document.addEventListener("DOMContentLoaded", function () {
    const source = new EventSource("/api/v1/events");
    for (const kind of KINDS) {
      source.addEventListener(kind, function (message) {
        const event = JSON.parse(message.data);
        htmx.trigger(document.body, "sb:event", { kind: event.kind, conversationId: event.conversationId });
      });
    }
    source.addEventListener("open", function () { document.body.dataset.live = "open"; });
  });
})();

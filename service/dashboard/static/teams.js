// Team settings: forms become the REST API's typed JSON, its field errors appear next to the fields they name,
// and a saved section is read again from the server.
(function () {
  "use strict";

  // A control's name is its path in the body ("telegram.chatId", "rules.0.conditions.url"); data-type says
  // how its text becomes JSON, data-empty what an empty value means: "omit" (leave it out: a secret stays as
  // stored, a condition is not checked), "keep" (send ""), else null (clear the setting).
  const LITERAL = /^(true|false|-?\d+(\.\d+)?)$|^".*"$/;

  function setPath(body, path, value) {
    const parts = path.split(".");
    let node = body;
    parts.slice(0, -1).forEach(function (part, i) {
      if (node[part] === undefined) node[part] = /^\d+$/.test(parts[i + 1]) ? [] : {};
      node = node[part];
    });
    node[parts[parts.length - 1]] = value;
  }

  function getPath(body, path) {
    return path.split(".").reduce((node, part) => (node === undefined ? undefined : node[part]), body);
  }

  function fieldLines(text) {
    // "key = value" lines; a quoted value, true, false or a number is that JSON value, anything else a glob.
    // A line without "=" is sent as a null value, so the API names it rather than the page guessing.
    const values = {};
    for (const line of text.split("\n")) {
      if (!line.trim()) continue;
      const at = line.indexOf("=");
      if (at < 0) {
        values[line.trim()] = null;
        continue;
      }
      const raw = line.slice(at + 1).trim();
      values[line.slice(0, at).trim()] = LITERAL.test(raw) ? JSON.parse(raw) : raw;
    }
    return values;
  }

  function typed(control) {
    const type = control.dataset.type || "text";
    if (type === "bool") return control.checked;
    if (type === "json") return JSON.parse(control.value);
    const text = control.value.trim();
    if (type === "list") return text.split(/[,\n]/).map((item) => item.trim()).filter(Boolean);
    if (type === "map") return fieldLines(control.value);
    // Not a whole number: sent as typed, so the API's problem names the field.
    if (type === "int") return /^-?\d+$/.test(text) ? Number(text) : text;
    return control.value;
  }

  function isEmpty(control, value) {
    if (control.type === "checkbox") return false;
    if (Array.isArray(value)) return value.length === 0 && control.dataset.empty === "omit";
    if (value !== null && typeof value === "object") return Object.keys(value).length === 0;
    return value === "";
  }

  function collect(form) {
    const body = {};
    if (form.dataset.list) body[form.dataset.list] = [];
    for (const control of form.elements) {
      if (!control.name || control.disabled) continue;
      if (control.dataset.type === "multi") {
        if (getPath(body, control.name) === undefined) setPath(body, control.name, []);
        if (control.checked) getPath(body, control.name).push(control.value);
        continue;
      }
      const value = typed(control);
      if (!isEmpty(control, value)) setPath(body, control.name, value);
      else if (control.dataset.empty === "keep") setPath(body, control.name, value);
      else if (control.dataset.empty !== "omit") setPath(body, control.name, null);
    }
    // A fieldset marked data-optional="path" sends null for its object when every control in it is empty
    // (business hours with no time zone, no interval and no holiday: the team has no hours).
    for (const fieldset of form.querySelectorAll("fieldset[data-optional]")) {
      if (isBlank(getPath(body, fieldset.dataset.optional))) setPath(body, fieldset.dataset.optional, null);
    }
    return body;
  }

  function isBlank(value) {
    if (value === null || value === undefined || value === "") return true;
    if (Array.isArray(value)) return value.length === 0;
    if (typeof value === "object") return Object.values(value).every(isBlank);
    return false;
  }

  htmx.defineExtension("sb-typed", {
    encodeParameters: function (xhr, parameters, elt) {
      if (elt.tagName !== "FORM") return null; // buttons: the dashboard's own JSON encoding
      xhr.overrideMimeType("text/json");
      return JSON.stringify(collect(elt));
    },
  });

  // --- field errors

  function clearErrors(form) {
    form.querySelectorAll(".field-error").forEach((note) => note.remove());
    form.querySelectorAll("[aria-invalid]").forEach((control) => control.removeAttribute("aria-invalid"));
  }

  function controlFor(form, field) {
    // "rules.1.conditions.country.0" is shown at the control "rules.1.conditions.country".
    const controls = Array.from(form.elements);
    for (let path = String(field || ""); path; path = path.slice(0, Math.max(path.lastIndexOf("."), 0))) {
      const control = controls.find((c) => c.name === path);
      if (control) return control;
    }
    return null;
  }

  function showErrors(form, errors) {
    let placed = 0;
    for (const error of errors) {
      const control = controlFor(form, error.field);
      if (!control) continue;
      control.setAttribute("aria-invalid", "true");
      const note = document.createElement("span");
      note.className = "field-error";
      note.dataset.field = error.field;
      note.textContent = error.message;
      (control.closest("label") || control).after(note);
      placed += 1;
    }
    return placed === errors.length && placed > 0;
  }

  function problem(xhr) {
    try {
      return JSON.parse(xhr.responseText);
    } catch (ignored) {
      return {};
    }
  }

  // Capture phase: before dashboard.js's handlers on the same document.
  document.addEventListener(
    "htmx:responseError",
    function (evt) {
      const form = evt.detail.elt.closest("[data-section] form");
      if (!form) return;
      clearErrors(form);
      if (showErrors(form, problem(evt.detail.xhr).errors || [])) {
        // Every error sits at its field: the banner at the top would only repeat them.
        evt.stopPropagation();
        const flash = document.getElementById("flash");
        if (flash) flash.hidden = true;
        form.querySelector("[aria-invalid]").focus();
      }
    },
    true,
  );

  function keepAsDefaults(form) {
    // dashboard.js resets a form after a successful write: saved values become the ones it resets to.
    // Secrets are not kept: the field empties, the page says "configured".
    for (const control of form.elements) {
      if (control.type === "password") continue;
      if (control.type === "checkbox") control.defaultChecked = control.checked;
      else if (control.tagName === "SELECT") Array.from(control.options).forEach((o) => (o.defaultSelected = o.selected));
      else if ("defaultValue" in control) control.defaultValue = control.value;
    }
  }

  function revealSecret(xhr) {
    const created = JSON.parse(xhr.responseText);
    const box = document.getElementById("webhook-secret");
    box.querySelector("[data-url]").textContent = created.url;
    box.querySelector("[data-secret]").textContent = created.secret;
    box.hidden = false;
  }

  // A webhook's delivery log: read when asked for, and again after a test delivery was queued.
  function showDeliveries(button) {
    htmx.trigger(button.closest("[data-webhook]").querySelector(".deliveries"), "sb:deliveries");
  }

  document.addEventListener("click", function (evt) {
    const button = evt.target.closest("button[type=button][data-shows-deliveries]");
    if (button) showDeliveries(button);
  });

  document.addEventListener(
    "htmx:afterRequest",
    function (evt) {
      const elt = evt.detail.elt;
      const section = elt.closest("[data-section]");
      if (!section || !evt.detail.successful || evt.detail.requestConfig.verb === "get") return;
      const form = elt.closest("form");
      if (form) {
        clearErrors(form);
        keepAsDefaults(form);
      }
      if (elt.hasAttribute("data-reveal-secret")) revealSecret(evt.detail.xhr);
      if (elt.hasAttribute("data-shows-deliveries")) showDeliveries(elt);
      else htmx.trigger(section, "sb:saved");
    },
    true,
  );

  // --- the rules editor: add, move and remove rules in the form; "Save rules" sends the list in this order.

  function renumber(list) {
    Array.from(list.children).forEach(function (rule, index) {
      rule.querySelector(".rule-number").textContent = String(index + 1);
      rule.querySelectorAll("[data-name]").forEach((c) => (c.name = "rules." + index + "." + c.dataset.name));
    });
  }

  document.addEventListener("click", function (evt) {
    const button = evt.target.closest("[data-rule-action]");
    if (!button) return;
    const form = button.closest("form");
    const list = form.querySelector("[data-rules]");
    const rule = button.closest("[data-rule]");
    const action = button.dataset.ruleAction;
    if (action === "add") {
      list.append(form.querySelector("template[data-rule-template]").content.cloneNode(true));
      renumber(list);
      list.lastElementChild.querySelector("input").focus();
      return;
    }
    if (action === "up" && rule.previousElementSibling) rule.previousElementSibling.before(rule);
    if (action === "down" && rule.nextElementSibling) rule.nextElementSibling.after(rule);
    if (action === "remove") rule.remove();
    clearErrors(form);
    renumber(list);
    if (action !== "remove") button.focus();
  });
})();

// Canned responses page: the editor creates or changes a response through the REST API, with a live preview.
(function () {
  "use strict";

  const form = document.getElementById("canned-form");
  const field = (id) => document.getElementById(id);
  let editing = null; // the id of the response being changed, or null for a new one
  let asked = 0; // newest preview request; older answers arriving late are dropped
  let timer = null;

  function startNew() {
    editing = null;
    form.reset();
    field("canned-scope").disabled = false;
    field("canned-form-title").textContent = "New canned response";
    field("canned-save").textContent = "Create";
    field("canned-cancel").hidden = true;
    preview();
  }

  function startEdit(button) {
    editing = button.dataset.id;
    field("canned-scope").value = button.dataset.team;
    field("canned-scope").disabled = true; // a response keeps its scope
    field("canned-shortcut").value = button.dataset.shortcut;
    field("canned-title").value = button.dataset.title;
    field("canned-body").value = button.dataset.body;
    field("canned-form-title").textContent = "Edit /" + button.dataset.shortcut;
    field("canned-save").textContent = "Save";
    field("canned-cancel").hidden = false;
    preview();
    form.scrollIntoView({ behavior: "smooth" });
  }

  // The body as the render endpoint would fill it, for the chosen conversation (or none).
  async function preview() {
    const body = field("canned-body").value;
    const shown = field("canned-preview");
    const missing = field("canned-missing");
    const lookup = ++asked;
    if (!body) {
      shown.textContent = "";
      shown.classList.remove("invalid");
      missing.hidden = true;
      return;
    }
    const conversationId = field("canned-preview-for").value || null;
    try {
      const rendered = await Switchboard.call("POST", "/api/v1/canned-responses/preview", {
        body: body,
        conversationId: conversationId,
      });
      if (lookup !== asked) return;
      shown.textContent = rendered.body;
      shown.classList.remove("invalid");
      missing.textContent = rendered.missing.length ? "Empty here: " + rendered.missing.join(", ") : "";
      missing.hidden = rendered.missing.length === 0;
    } catch (error) {
      if (lookup !== asked) return;
      shown.textContent = error.message;
      shown.classList.add("invalid");
      missing.hidden = true;
    }
  }

  function previewSoon() {
    clearTimeout(timer);
    timer = setTimeout(preview, 200);
  }

  async function save(evt) {
    evt.preventDefault();
    const values = {
      shortcut: field("canned-shortcut").value,
      title: field("canned-title").value,
      body: field("canned-body").value,
    };
    try {
      if (editing) {
        await Switchboard.call("PATCH", "/api/v1/canned-responses/" + editing, values);
      } else {
        values.teamId = field("canned-scope").value || null;
        await Switchboard.call("POST", "/api/v1/canned-responses", values);
      }
    } catch (error) {
      Switchboard.showError(error.message);
      return;
    }
    document.getElementById("flash").hidden = true;
    startNew();
    Switchboard.refresh();
  }

  form.addEventListener("submit", save);
  field("canned-body").addEventListener("input", previewSoon);
  field("canned-preview-for").addEventListener("change", preview);
  field("canned-cancel").addEventListener("click", startNew);
  // The list is swapped in after each change, so its buttons are found by delegation.
  document.getElementById("canned-list").addEventListener("click", function (evt) {
    const button = evt.target.closest(".canned-edit");
    if (button) startEdit(button);
  });
})();

// Profile page: create a personal access token through the REST API and show its secret, once.
(function () {
  "use strict";

  const DAY = 24 * 60 * 60 * 1000;
  const form = document.getElementById("token-form");
  const panel = document.getElementById("new-token");
  const secret = document.getElementById("new-token-value");

  form.addEventListener("submit", async function (evt) {
    evt.preventDefault();
    const days = document.getElementById("token-expiry").value;
    const scopes = Array.from(form.querySelectorAll("input[name=scopes]:checked"), (box) => box.value);
    let created;
    try {
      created = await Switchboard.call("POST", "/api/v1/me/tokens", {
        name: document.getElementById("token-name").value,
        scopes: scopes,
        expiresAt: days ? new Date(Date.now() + Number(days) * DAY).toISOString() : null,
      });
    } catch (error) {
      Switchboard.showError(error.message);
      return;
    }
    document.getElementById("flash").hidden = true;
    document.getElementById("token-name").value = "";
    secret.textContent = created.token;
    panel.hidden = false;
    Switchboard.refresh();
  });

  document.getElementById("new-token-copy").addEventListener("click", function () {
    // The clipboard API needs a secure context; elsewhere the selected text can be copied by hand.
    window.getSelection().selectAllChildren(secret);
    if (navigator.clipboard) navigator.clipboard.writeText(secret.textContent).catch(function () {});
  });
})();

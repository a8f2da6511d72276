// Profile page: create a personal access token, or get a chat link code, through the REST API; each is shown once.
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

  // The code goes into each platform's command ([data-command] holds the text before it).
  document.getElementById("link-code-get").addEventListener("click", async function () {
    let created;
    try {
      created = await Switchboard.call("POST", "/api/v1/me/bridge-links/codes");
    } catch (error) {
      Switchboard.showError(error.message);
      return;
    }
    document.getElementById("flash").hidden = true;
    document.getElementById("link-code-value").textContent = created.code;
    const expiry = document.getElementById("link-code-expiry");
    expiry.dateTime = created.expiresAt;
    expiry.textContent = new Date(created.expiresAt).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    for (const command of document.querySelectorAll("#link-code [data-command]")) {
      command.textContent = command.dataset.command + created.code;
    }
    document.getElementById("link-code").hidden = false;
  });

  // Desktop notifications: this browser's push subscription, registered as a webpush device of yours.
  const notify = document.getElementById("notifications-enable");
  if (notify) {
    notify.addEventListener("click", async function () {
      const status = document.getElementById("notifications-status");
      try {
        if (!("serviceWorker" in navigator) || !("PushManager" in window)) {
          throw new Error("This browser cannot show push notifications");
        }
        if ((await Notification.requestPermission()) !== "granted") {
          throw new Error("Notifications are blocked for this site: allow them in the browser's site settings");
        }
        const registration = await navigator.serviceWorker.register(Switchboard.base + "/app/sw.js", { scope: Switchboard.base + "/app/" });
        await navigator.serviceWorker.ready;
        const subscription =
          (await registration.pushManager.getSubscription()) ||
          (await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: notify.dataset.vapidKey }));
        await Switchboard.call("POST", "/api/v1/me/devices", {
          platform: "webpush",
          subscription: subscription.toJSON(),
          name: "Browser: " + navigator.userAgent.slice(0, 150),
        });
        status.textContent = "Notifications are on for this browser.";
      } catch (error) {
        status.textContent = "Notifications are off: " + error.message;
      }
      status.hidden = false;
    });
  }
})();

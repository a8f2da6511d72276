// The dashboard's service worker (scope: the dashboard, /app/ under the site's path prefix): shows a push notification (assignment, visitor message,
// mention, queue alert) and opens its conversation when clicked. Switchboard sends none while a dashboard tab
// or a foreground app of the operator's is connected, so every push that arrives is shown.
"use strict";

// Paths under the dashboard, wherever the site mounts it (its scope is the dashboard's root, "/app/").
function dashboardPath(path) {
  return new URL(self.registration.scope).pathname.replace(/\/$/, "") + path;
}

self.addEventListener("push", function (event) {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (error) {
    data = { body: event.data.text() };
  }
  const url = dashboardPath(data.conversationId ? "/conversations/" + encodeURIComponent(data.conversationId) : "");
  event.waitUntil(
    self.registration.showNotification(data.title || "Switchboard", {
      body: data.body || "",
      tag: data.tag,
      icon: dashboardPath("/static/icon.svg"),
      data: { url: url, type: data.type || null },
    })
  );
});

self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  const url = event.notification.data && event.notification.data.url;
  event.waitUntil(
    self.clients.matchAll({ type: "window" }).then(function (windows) {
      const open = windows.find((w) => new URL(w.url).pathname === url);
      return open ? open.focus() : self.clients.openWindow(url || dashboardPath(""));
    })
  );
});

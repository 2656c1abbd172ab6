// Opt-in browser notifications for the monitor's alerts (the kinds its --notify-on picks, the same ones
// its webhooks get), while this page is open. app.js hands each alert over as a "vsrpp:alert" event.
(() => {
  "use strict";
  const button = document.getElementById("btn-notify");
  if (!button) return;
  const KEY = "vsrpp-notify";
  const supported = "Notification" in window && window.isSecureContext;
  const on = () => supported && Notification.permission === "granted" && localStorage.getItem(KEY) === "1";

  function show() {
    button.hidden = !supported;
    const blocked = supported && Notification.permission === "denied";
    button.disabled = blocked;
    button.title = blocked ? "notifications are blocked for this site in the browser's settings"
                           : "a desktop notification for each alert while this page is open";
    button.textContent = on() ? "Notifications on" : "Notify me";
    button.setAttribute("aria-pressed", String(on()));
  }

  button.addEventListener("click", async () => {
    if (on()) localStorage.removeItem(KEY);
    else if ((await Notification.requestPermission()) === "granted") localStorage.setItem(KEY, "1");
    show();
  });

  window.addEventListener("vsrpp:alert", (e) => {
    const alert = e.detail && e.detail.alert;
    if (!on() || !alert || !alert.data || !alert.data.notify) return;
    new Notification(String(alert.data.title || alert.kind), { body: String(alert.message || ""), tag: alert.data.id });
  });
  show();
})();

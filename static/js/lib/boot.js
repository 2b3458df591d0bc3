// Loaded by every page (templates/base.html): the shared "queued / retrying" banner, and forms that only
// hold live controls (data-no-submit) never navigate on Enter. No inline handlers: the CSP forbids them.
import { installQueueStatus } from "./queue.js";

installQueueStatus();
for (const form of document.querySelectorAll("form[data-no-submit]")) {
  form.addEventListener("submit", (e) => e.preventDefault());
}

// The playground's small behaviours: Ctrl/Cmd+Enter runs, the picker filter
// and count, elapsed-time tickers of streaming columns, copy buttons on code.
// Everything is delegated from document, so content swapped in by htmx works too.
(function () {
  "use strict";

  const MAX_CHOICES = 6;
  const isMac = /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);

  function pickerCount(form) {
    const counter = form.querySelector("[data-pg-count]");
    if (!counter) return;
    const chosen = form.querySelectorAll('input[name="models"]:checked').length;
    counter.textContent = chosen ? `${chosen} chosen` + (chosen > MAX_CHOICES ? ` (at most ${MAX_CHOICES})` : "") : "choose 2 to 6";
    counter.classList.toggle("pg-count-over", chosen > MAX_CHOICES);
  }

  function filterPicker(input) {
    const fieldset = input.closest("fieldset");
    const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    fieldset.querySelectorAll("[data-pg-options] > li").forEach((item) => {
      const text = item.dataset.search || "";
      const match = words.every((word) => text.includes(word));
      item.hidden = !match;
      if (match) shown += 1;
    });
    const none = fieldset.querySelector("[data-pg-no-match]");
    if (none) none.hidden = shown > 0;
  }

  function setUp(root) {
    root.querySelectorAll("[data-pg-form]").forEach(pickerCount);
    if (isMac) root.querySelectorAll("[data-pg-shortcut]").forEach((kbd) => { kbd.textContent = "⌘ ↵"; });
  }

  document.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
    const form = event.target.closest && event.target.closest("[data-pg-form]");
    if (!form) return;
    event.preventDefault();
    form.requestSubmit();
  });

  document.addEventListener("input", (event) => {
    if (event.target.matches("[data-pg-filter]")) filterPicker(event.target);
  });

  document.addEventListener("keydown", (event) => {
    // Enter in the filter must not submit the run.
    if (event.key === "Enter" && !event.ctrlKey && !event.metaKey && event.target.matches("[data-pg-filter]")) {
      event.preventDefault();
    }
  });

  document.addEventListener("change", (event) => {
    if (event.target.matches('input[name="models"]')) pickerCount(event.target.closest("form"));
  });

  // Elapsed time of running columns: the server gives the age at render time.
  const tickerStarts = new WeakMap();
  function tick() {
    const now = performance.now();
    document.querySelectorAll(".pg-ticker[data-elapsed-ms]").forEach((ticker) => {
      if (!tickerStarts.has(ticker)) tickerStarts.set(ticker, now - Number(ticker.dataset.elapsedMs || 0));
      const seconds = (now - tickerStarts.get(ticker)) / 1000;
      ticker.textContent = `${seconds.toFixed(1)} s`;
    });
  }
  setInterval(tick, 100);

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
    return Promise.resolve();
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest(".copy-code");
    if (!button) return;
    const code = button.closest(".code-block").querySelector("pre code");
    copyText(code.textContent).then(() => {
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
  });

  // A refused vote (400) comes back as the vote box saying why: swap it in like an accepted one.
  document.addEventListener("htmx:beforeSwap", (event) => {
    if (event.detail.xhr.status === 400 && event.target.closest(".vote-box")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  document.addEventListener("DOMContentLoaded", () => { setUp(document); tick(); });
  document.addEventListener("htmx:load", (event) => {
    if (event.target.matches && event.target.matches("[data-pg-form]")) setUp(event.target.parentElement);
  });
})();

// Site-wide behaviours, bound through data attributes: the Content-Security-Policy
// refuses inline handlers (onclick, hx-on). Delegated from document, so that
// content swapped in by htmx works too.
(function () {
  "use strict";

  // <button data-copy-from="ID">: copies the value of the field ID.
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-copy-from]");
    if (!button) return;
    const field = document.getElementById(button.dataset.copyFrom);
    field.select();
    if (navigator.clipboard) {
      navigator.clipboard.writeText(field.value).then(() => { button.textContent = "Copied"; });
    } else if (document.execCommand("copy")) {
      button.textContent = "Copied";
    }
  });
})();

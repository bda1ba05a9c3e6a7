// For a page whose htmx swaps bring scripts of their own (the leaderboard's
// chart). htmx runs a swapped-in inline script under this page's CSP nonce
// (htmx.config.inlineScriptNonce), which would let any script run, one
// injected into the response included. So only the scripts that carry the
// nonce of the response that brought them, which the server put there, are
// kept; every other one is dropped before htmx sees it.
(function () {
  "use strict";

  document.addEventListener("htmx:beforeSwap", (event) => {
    const policy = event.detail.xhr.getResponseHeader("Content-Security-Policy") || "";
    const nonce = (/script-src[^;]*'nonce-([^']+)'/.exec(policy) || [])[1];
    const response = document.createElement("template");
    response.innerHTML = event.detail.serverResponse;
    const strangers = [...response.content.querySelectorAll("script:not([src])")].filter(
      (script) => !nonce || script.getAttribute("nonce") !== nonce,
    );
    if (strangers.length === 0) return;
    strangers.forEach((script) => script.remove());
    event.detail.serverResponse = response.innerHTML;
  });
})();

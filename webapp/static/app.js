// SSL Manager's behaviour that htmx attributes cannot express. No inline scripts: the CSP
// forbids them, so everything hooks in here by data attributes.
(function () {
  "use strict";

  function closeModal() {
    var dialog = document.querySelector("#modal dialog[open]");
    if (dialog) {
      dialog.close();
      dialog.remove();
      var back = document.querySelector("[data-modal-return]");
      if (back) { back.focus(); back.removeAttribute("data-modal-return"); }
    }
  }

  // A modal partial arrives as <dialog data-modal>: show it as a real modal so focus stays
  // inside and Escape closes it.
  document.addEventListener("htmx:afterSwap", function (event) {
    var dialog = event.detail.target.querySelector && event.detail.target.querySelector("dialog[data-modal]");
    if (dialog && !dialog.open) {
      if (document.activeElement) { document.activeElement.setAttribute("data-modal-return", ""); }
      dialog.showModal();
      var focus = dialog.querySelector("[autofocus], button");
      if (focus) { focus.focus(); }
    }
  });

  document.addEventListener("click", function (event) {
    var target = event.target.closest("[data-close-modal]");
    if (target) { event.preventDefault(); closeModal(); return; }
    var copy = event.target.closest("[data-copy]");
    if (copy) {
      event.preventDefault();
      navigator.clipboard.writeText(copy.getAttribute("data-copy")).then(function () {
        var label = copy.textContent;
        copy.textContent = "Copied";
        setTimeout(function () { copy.textContent = label; }, 1500);
      });
    }
  });

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { closeModal(); }
  });

  // Forms that destroy something ask first: <form data-confirm="Delete X?">.
  document.addEventListener("submit", function (event) {
    var form = event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
  }, true);
})();

// The printable instruction page: <button data-print>.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-print]")) { event.preventDefault(); window.print(); }
  });
})();

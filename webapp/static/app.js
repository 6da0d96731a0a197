// SSL Manager's behaviour that htmx attributes cannot express. No inline scripts: the CSP
// forbids them, so everything hooks in here by data attributes.
(function () {
  "use strict";

  var returnFocus = null;  // {element, id}: where focus goes back when the modal closes

  function closeModal() {
    var dialog = document.querySelector("#sslm-modal dialog[open]");
    if (dialog) {
      dialog.close();
      dialog.remove();
      // The element may have been swapped out meanwhile (Save and Test re-renders its form):
      // then its replacement with the same id takes the focus.
      var back = returnFocus && (returnFocus.element.isConnected ? returnFocus.element
        : returnFocus.id && document.getElementById(returnFocus.id));
      returnFocus = null;
      if (back) { back.focus(); }
    }
  }

  // A modal partial arrives as <dialog data-modal>, either as the swap's target or out of band
  // into #sslm-modal (Save and Test): show it as a real modal so focus stays inside and Escape closes it.
  function openModal(root) {
    var dialog = root && root.querySelector && root.querySelector("dialog[data-modal]");
    if (dialog && !dialog.open) {
      var active = document.activeElement;
      returnFocus = active && active !== document.body ? {element: active, id: active.id} : null;
      dialog.showModal();
      var focus = dialog.querySelector("[autofocus], button");
      if (focus) { focus.focus(); }
    }
  }
  document.addEventListener("htmx:afterSwap", function (event) { openModal(event.detail.target); });
  document.addEventListener("htmx:oobAfterSwap", function (event) { openModal(event.detail.target); });

  document.addEventListener("click", function (event) {
    var target = event.target.closest("[data-close-modal]");
    if (target) { event.preventDefault(); closeModal(); return; }
    // A submit button in the modal for a form outside it (Save anyway): the click submits the
    // form first; the modal closes once the submit is under way (a removed button submits nothing).
    if (event.target.closest("[data-submit-close]")) { setTimeout(closeModal, 0); return; }
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

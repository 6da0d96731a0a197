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
      focusInside(dialog);
    }
  }

  // The verdict takes the focus, without scrolling: the dialog opens at its top (title and
  // verdict first, at any viewport height), never at a footer button far below.
  function focusInside(dialog) {
    var focus = dialog.querySelector("[data-verdict]") || dialog.querySelector("[autofocus]") || dialog.querySelector("button");
    if (focus) { focus.focus({preventScroll: true}); }
    var article = dialog.querySelector("article");
    if (article) { article.scrollTop = 0; }
  }
  // htmx puts the focus back on the element with the focused one's id once its own swap is done
  // (Save and Test's button, in the re-rendered form): after settling, the open modal takes it back.
  document.addEventListener("htmx:afterSettle", function () {
    var dialog = document.querySelector("#sslm-modal dialog[data-modal][open]");
    if (dialog && !dialog.contains(document.activeElement)) { focusInside(dialog); }
  });

  // After an htmx save of a form marked data-feedback (the CA profile's), the outcome is far
  // above the buttons: bring "Saved." or the first field in error into view and focus it. Not
  // when a modal opened with it (Save and Test): the modal has the focus then.
  document.addEventListener("htmx:afterSwap", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-feedback]") || document.querySelector(".sslm dialog[open]")) { return; }
    var first = form.querySelector("[aria-invalid=true]") || form.querySelector(".sslm-flash, [role=alert]");
    if (!first) { return; }
    if (!first.matches("input, select, textarea, button")) { first.setAttribute("tabindex", "-1"); }
    first.scrollIntoView({block: "center"});
    first.focus({preventScroll: true});
  });
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

// One handler for every htmx request that fails (issue 17): htmx swaps nothing on a 4xx or 5xx,
// so without this a refused or crashed request looked like a click that did nothing. The message
// comes from the error page the server sent (its <h1> and first paragraph); after a CSRF refusal
// (a stale page: its token expired with the session) it offers to reload.
(function () {
  "use strict";

  function fromPage(xhr) {
    var type = xhr.getResponseHeader("Content-Type") || "";
    if (type.indexOf("text/html") !== 0 || !xhr.responseText) { return ""; }
    var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
    var title = doc.querySelector("main h1, h1");
    var text = doc.querySelector(".sslm-error-message") || (title && title.parentNode.querySelector("h1 ~ p"));
    return [title && title.textContent.trim(), text && text.textContent.trim()]
      .filter(Boolean).join(": ").replace(/\s+/g, " ");
  }

  function isCsrf(xhr) {
    return xhr.getResponseHeader("X-SSLManager-Refused") === "csrf" ||
      ((xhr.status === 400 || xhr.status === 403) && /csrf|security token/i.test(xhr.responseText || ""));
  }

  function box() {
    var existing = document.getElementById("sslm-http-error");
    if (existing) { existing.remove(); }
    var el = document.createElement("div");
    el.id = "sslm-http-error";
    el.className = "sslm-http-error";
    el.setAttribute("role", "alert");
    // Inside an open modal dialog (the top layer) or it would sit hidden behind it.
    var host = document.querySelector(".sslm dialog[open] article") || document.querySelector(".sslm") || document.body;
    host.appendChild(el);
    return el;
  }

  function button(label, onClick, className) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = "sslm-small " + (className || "");
    b.textContent = label;
    b.addEventListener("click", onClick);
    return b;
  }

  function show(message, reload) {
    var el = box();
    var p = document.createElement("p");
    p.textContent = message;
    el.appendChild(p);
    var actions = document.createElement("div");
    actions.className = "sslm-actions";
    if (reload) { actions.appendChild(button("Reload the page", function () { window.location.reload(); })); }
    actions.appendChild(button("Dismiss", function () { el.remove(); }, "secondary outline"));
    el.appendChild(actions);
    if (reload) { actions.firstChild.focus(); }
  }

  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var code = xhr.status + (xhr.statusText ? " " + xhr.statusText : "");
    var said = fromPage(xhr);
    if (isCsrf(xhr)) {
      show("The page is out of date: its security token was refused (" + code + "), so nothing was done. " +
        "Reload the page, then try again.", true);
    } else if (xhr.status >= 500) {
      show("The server failed (" + code + ")" + (said ? ": " + said : ". Try again in a moment."), false);
    } else {
      show("The request was refused (" + code + ")" + (said ? ": " + said : "."), false);
    }
  });
  document.addEventListener("htmx:sendError", function () {
    show("The server could not be reached: check the connection, then try again.", false);
  });
  document.addEventListener("htmx:timeout", function () {
    show("The server did not answer in time. Try again in a moment.", false);
  });
})();

// The navigation on a phone: folded behind "Menu" (a third of the first screen otherwise).
// Only with JavaScript: without it the button stays hidden and the links open.
(function () {
  "use strict";
  var narrow = window.matchMedia("(max-width: 576px)");
  function setUp() {
    document.querySelectorAll(".sslm-nav-toggle").forEach(function (button) {
      var header = button.closest(".sslm-header");
      button.hidden = false;
      function apply(open) {
        button.setAttribute("aria-expanded", open ? "true" : "false");
        header.classList.toggle("sslm-nav-folded", !open);
      }
      apply(!narrow.matches);
      narrow.addEventListener("change", function () { apply(!narrow.matches); });
      button.addEventListener("click", function () { apply(button.getAttribute("aria-expanded") !== "true"); });
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", setUp); } else { setUp(); }
})();

// Passkeys (WebAuthn): the browser's half of services/passkeys.py. The server sends the
// options as JSON (binary fields base64url); navigator.credentials makes or uses the key; the
// answer goes back as JSON. Buttons carry their URLs and the CSRF token in data attributes.
// data-passkey="register" adds one; "authenticate" (the step after the password) and "sign-in"
// (the password-less sign-in: the server's options name no credential, the browser offers the
// site's discoverable passkeys) use one. What carries data-needs-webauthn is hidden until this
// script finds WebAuthn here (progressive enhancement: without it, the page is the password form).
(function () {
  "use strict";
  function toBytes(b64url) {
    var b64 = b64url.replace(/-/g, "+").replace(/_/g, "/");
    var raw = atob(b64 + "===".slice((b64.length + 3) % 4));
    return Uint8Array.from(raw, function (c) { return c.charCodeAt(0); });
  }
  function toB64url(buffer) {
    var s = "";
    new Uint8Array(buffer).forEach(function (b) { s += String.fromCharCode(b); });
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function post(url, token, body) {
    return fetch(url, {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": token},
      body: JSON.stringify(body || {})}).then(function (r) {
        return r.json().then(function (data) {
          if (!r.ok) { throw new Error(data.error || ("HTTP " + r.status)); }
          return data;
        });
      });
  }
  function credentialJSON(cred) {
    var resp = cred.response, out = {id: cred.id, rawId: toB64url(cred.rawId), type: cred.type,
      clientExtensionResults: cred.getClientExtensionResults(), response: {
        clientDataJSON: toB64url(resp.clientDataJSON)}};
    if (resp.attestationObject) {
      out.response.attestationObject = toB64url(resp.attestationObject);
      out.response.transports = resp.getTransports ? resp.getTransports() : [];
    } else {
      out.response.authenticatorData = toB64url(resp.authenticatorData);
      out.response.signature = toB64url(resp.signature);
      out.response.userHandle = resp.userHandle ? toB64url(resp.userHandle) : null;
    }
    return JSON.stringify(out);
  }
  function descriptors(list) {
    return (list || []).map(function (d) { return Object.assign({}, d, {id: toBytes(d.id)}); });
  }
  function fail(button, error) {
    var where = document.getElementById(button.dataset.error);
    if (where) { where.textContent = error.message || String(error); where.hidden = false; }
    button.disabled = false;
  }
  function register(button) {
    var token = button.dataset.csrf, name = document.getElementById(button.dataset.nameField);
    post(button.dataset.options, token).then(function (o) {
      o.challenge = toBytes(o.challenge);
      o.user.id = toBytes(o.user.id);
      o.excludeCredentials = descriptors(o.excludeCredentials);
      return navigator.credentials.create({publicKey: o});
    }).then(function (cred) {
      return post(button.dataset.url, token, {credential: credentialJSON(cred), name: name ? name.value : ""});
    }).then(function (data) { window.location.assign(data.redirect); }, function (e) { fail(button, e); });
  }
  function authenticate(button) {
    var token = button.dataset.csrf;
    post(button.dataset.options, token).then(function (o) {
      o.challenge = toBytes(o.challenge);
      o.allowCredentials = descriptors(o.allowCredentials);
      return navigator.credentials.get({publicKey: o});
    }).then(function (cred) {
      return post(button.dataset.url, token, {credential: credentialJSON(cred)});
    }).then(function (data) { window.location.assign(data.redirect); }, function (e) { fail(button, e); });
  }
  if (window.PublicKeyCredential) {
    document.querySelectorAll("[data-needs-webauthn]").forEach(function (el) { el.hidden = false; });
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-passkey]");
    if (!button) { return; }
    event.preventDefault();
    if (!window.PublicKeyCredential) {
      fail(button, new Error("This browser has no passkey support here (it needs HTTPS or localhost)."));
      return;
    }
    button.disabled = true;
    (button.dataset.passkey === "register" ? register : authenticate)(button);
  });
}());

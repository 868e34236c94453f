/*
 * Crowdloop widget: a human check whose answers label data.
 *
 * <script src="https://crowdloop.example/static/widget/api.js" async defer></script>
 * <div class="crowdloop" data-sitekey="..." data-callback="onVerified"></div>
 *
 * Also renders into .h-captcha and .g-recaptcha elements and offers render, getResponse,
 * reset, execute and remove on window.crowdloop (and on window.hcaptcha and
 * window.grecaptcha when those are not defined), so a site integrated with hCaptcha or
 * reCAPTCHA switches by changing the script URL and the verify URL.
 *
 * No dependencies, no cookies (the accessibility pass keeps its own on Crowdloop's pages),
 * no inline script or style: everything looks the way
 * widget.css says, through classes, so a strict Content-Security-Policy is fine.
 */
(function () {
  "use strict";

  if (window.crowdloop && window.crowdloop.__crowdloop) {
    return;
  }

  var SCRIPT_PATH = /\/static\/widget\/api\.js(?:[?#].*)?$/;
  var FIELDS = ["crowdloop-response", "h-captcha-response", "g-recaptcha-response"];
  var SELECTOR = ".crowdloop, .h-captcha, .g-recaptcha";
  var script = document.currentScript || findScript();
  var scriptUrl = new URL(script ? script.src : "static/widget/api.js", document.baseURI);
  var apiBase = apiBaseOf(script, scriptUrl);
  var widgets = [];
  var uid = 0;

  function findScript() {
    var scripts = document.getElementsByTagName("script");
    for (var i = scripts.length - 1; i >= 0; i--) {
      if (SCRIPT_PATH.test(scripts[i].src)) {
        return scripts[i];
      }
    }
    return null;
  }

  function apiBaseOf(tag, url) {
    var explicit = tag && tag.getAttribute("data-api");
    if (explicit) {
      return explicit.replace(/\/+$/, "");
    }
    var href = url.href.split(/[?#]/)[0];
    if (SCRIPT_PATH.test(href)) {
      return href.replace(SCRIPT_PATH, "");
    }
    return url.origin;
  }

  function loadStylesheet() {
    var href = new URL("widget.css", scriptUrl).href;
    var links = document.querySelectorAll('link[rel="stylesheet"]');
    for (var i = 0; i < links.length; i++) {
      if (links[i].href === href) {
        return;
      }
    }
    var link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = href;
    (document.head || document.documentElement).appendChild(link);
  }

  // --- Small DOM helpers: text only, never HTML ---------------------------------------------

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined && text !== null) {
      node.textContent = text;
    }
    return node;
  }

  function button(className, text) {
    var node = el("button", className, text);
    node.type = "button";
    return node;
  }

  function callbackOf(value) {
    if (typeof value === "function") {
      return value;
    }
    if (typeof value === "string" && value && typeof window[value] === "function") {
      return window[value];
    }
    return null;
  }

  function request(method, path, body) {
    var init = { method: method, credentials: "omit", mode: "cors", cache: "no-store" };
    if (body !== undefined) {
      init.headers = { "Content-Type": "application/json" };
      init.body = JSON.stringify(body);
    }
    return fetch(apiBase + path, init).then(function (response) {
      return response.json().then(
        function (data) {
          return { status: response.status, data: data };
        },
        function () {
          return { status: response.status, data: {} };
        }
      );
    });
  }

  // --- One widget -----------------------------------------------------------------------------

  function Widget(id, container, params) {
    this.id = id;
    this.container = container;
    this.sitekey = params.sitekey || container.getAttribute("data-sitekey") || "";
    this.params = params;
    this.token = "";
    this.challenge = null;
    this.step = 0;
    this.answers = {};
    this.busy = false;
    this.expiryTimer = null;
    this.waiters = [];
    this.invisible = (params.size || container.getAttribute("data-size")) === "invisible";
    this.build();
  }

  Widget.prototype.option = function (name) {
    if (this.params[name] !== undefined) {
      return this.params[name];
    }
    return this.container.getAttribute("data-" + name);
  };

  Widget.prototype.build = function () {
    var self = this;
    var n = ++uid;
    var host = this.container;
    if (host.tagName === "BUTTON" || host.tagName === "INPUT") {
      // Invisible binding (reCAPTCHA style): the button starts the check, the widget
      // shows right after it.
      var holder = el("div", "cl-holder");
      host.parentNode.insertBefore(holder, host.nextSibling);
      host.addEventListener("click", function (event) {
        if (!self.token) {
          event.preventDefault();
          self.start();
        }
      });
      this.boundButton = host;
      host = holder;
      this.invisible = true;
    }
    this.root = el("div", "cl-widget");
    this.root.setAttribute("role", "group");
    this.root.setAttribute("aria-label", "Human check");
    this.root.setAttribute("data-crowdloop-widget", String(this.id));

    this.head = el("div", "cl-head");
    this.startButton = button("cl-start");
    this.startBox = el("span", "cl-box");
    this.startBox.setAttribute("aria-hidden", "true");
    this.startLabel = el("span", "cl-start-label", "I am human");
    this.startButton.appendChild(this.startBox);
    this.startButton.appendChild(this.startLabel);
    this.startButton.setAttribute("aria-describedby", "cl-brand-" + n);
    this.startButton.addEventListener("click", function () {
      self.start();
    });
    var brand = el("span", "cl-brand", "Crowdloop");
    brand.id = "cl-brand-" + n;
    brand.setAttribute("title", "Your answers help label data for this site's project.");
    this.head.appendChild(this.startButton);
    this.head.appendChild(brand);
    if (this.invisible) {
      this.head.hidden = true;
    }

    this.body = el("div", "cl-body");
    this.body.hidden = true;
    this.body.addEventListener("keydown", function (event) {
      self.onKey(event);
    });
    this.promptId = "cl-prompt-" + n;

    this.status = el("p", "cl-status");
    this.status.setAttribute("role", "status");
    this.status.setAttribute("aria-live", "polite");

    this.root.appendChild(this.head);
    this.root.appendChild(this.body);
    this.root.appendChild(this.status);
    this.fields = FIELDS.map(function (name) {
      var input = el("input");
      input.type = "hidden";
      input.name = name;
      if (self.id === 0) {
        input.id = name;
      }
      self.root.appendChild(input);
      return input;
    });
    host.appendChild(this.root);
  };

  Widget.prototype.say = function (text, kind) {
    this.status.textContent = text || "";
    this.status.className = "cl-status" + (kind ? " cl-status-" + kind : "");
  };

  Widget.prototype.setToken = function (token) {
    this.token = token || "";
    for (var i = 0; i < this.fields.length; i++) {
      this.fields[i].value = this.token;
    }
  };

  Widget.prototype.start = function () {
    if (this.busy || this.token) {
      return;
    }
    var self = this;
    this.busy = true;
    this.startButton.setAttribute("aria-busy", "true");
    this.say("Loading a challenge…");
    request("GET", "/api/v1/challenge?sitekey=" + encodeURIComponent(this.sitekey)).then(
      function (reply) {
        self.busy = false;
        self.startButton.removeAttribute("aria-busy");
        if (reply.status === 200) {
          self.show(reply.data, "");
        } else {
          self.fail(reply.data.detail || "The check could not be loaded (" + reply.status + ").", reply.data.error);
        }
      },
      function () {
        self.busy = false;
        self.startButton.removeAttribute("aria-busy");
        self.fail("The check could not be reached. Try again.", "network-error");
      }
    );
  };

  Widget.prototype.fail = function (text, code) {
    this.say(text, "error");
    this.body.hidden = true;
    this.head.hidden = false;
    var onError = callbackOf(this.option("error-callback"));
    if (onError) {
      onError(code || "error");
    }
    this.settle(null, code || "error");
  };

  Widget.prototype.show = function (challenge, note) {
    this.challenge = challenge;
    this.step = 0;
    this.stage = null;
    this.answers = {};
    this.selected = {};
    this.head.hidden = this.invisible;
    this.body.hidden = false;
    this.body.textContent = "";
    this.say(note || "");
    var prompt = el("p", "cl-prompt", challenge.prompt);
    prompt.id = this.promptId;
    this.body.appendChild(prompt);
    if (challenge.kind === "grid") {
      this.showGrid();
    } else if (challenge.kind === "choice" || challenge.kind === "verify") {
      this.showStep();
    } else {
      // A test key: nothing to solve.
      this.submit({});
      return;
    }
    this.accessibilityLink();
  };

  // For people who cannot see the images: an accessibility pass, earned once by e-mail
  // on Crowdloop's own pages, passes the open challenge in a small window that hands
  // the token back here (postMessage, checked against Crowdloop's origin).
  Widget.prototype.accessibilityLink = function () {
    var self = this;
    var href =
      apiBase +
      "/accessibility/?challenge=" +
      encodeURIComponent(this.challenge.id) +
      "&origin=" +
      encodeURIComponent(window.location.origin);
    var line = el("p", "cl-a11y");
    var link = el("a", "cl-a11y-link", "Cannot see the images? Use an accessibility pass");
    link.href = href;
    link.target = "_blank";
    link.addEventListener("click", function (event) {
      var opened = window.open(href, "crowdloop-a11y", "popup,width=520,height=640");
      if (opened) {
        event.preventDefault();
        self.say("The accessibility pass opened in a new window.");
      }
    });
    line.appendChild(link);
    this.body.appendChild(line);
  };

  Widget.prototype.onAccessibilityPass = function (data) {
    if (!this.challenge || data.challenge !== this.challenge.id || typeof data.token !== "string" || !data.token) {
      return;
    }
    this.passed(data.token, Number(data.expires_in) || 120, "You are verified with your accessibility pass.");
  };

  Widget.prototype.tileContent = function (item) {
    var content;
    if (item.image) {
      content = el("img", "cl-image");
      content.src = item.image;
      content.alt = "";
      content.decoding = "async";
    } else {
      content = el("span", "cl-text", item.text);
    }
    return content;
  };

  Widget.prototype.showGrid = function () {
    var self = this;
    var items = this.challenge.items;
    var noun = items.length && items[0].image ? "Image" : "Text";
    var grid = el("div", "cl-grid");
    grid.setAttribute("role", "group");
    grid.setAttribute("aria-labelledby", this.promptId);
    items.forEach(function (item, index) {
      var tile = button("cl-tile");
      tile.setAttribute("aria-pressed", "false");
      tile.setAttribute("aria-label", noun + " " + (index + 1) + " of " + items.length);
      tile.appendChild(self.tileContent(item));
      tile.addEventListener("click", function () {
        var on = !self.selected[item.id];
        self.selected[item.id] = on;
        tile.setAttribute("aria-pressed", on ? "true" : "false");
      });
      grid.appendChild(tile);
    });
    this.body.appendChild(grid);
    var hint = el("p", "cl-hint", "Tab to a tile, Enter or Space selects it.");
    this.body.appendChild(hint);
    this.actions(function () {
      var chosen = items
        .filter(function (item) {
          return self.selected[item.id];
        })
        .map(function (item) {
          return item.id;
        });
      self.submit({ selected: chosen });
    });
    grid.firstChild && grid.firstChild.focus();
  };

  Widget.prototype.actions = function (onVerify) {
    var self = this;
    var bar = el("div", "cl-actions");
    var verify = button("cl-verify", "Verify");
    verify.addEventListener("click", onVerify);
    var again = button("cl-reload", "New challenge");
    again.setAttribute("aria-label", "Load a new challenge");
    again.addEventListener("click", function () {
      self.body.hidden = true;
      self.start();
    });
    bar.appendChild(verify);
    bar.appendChild(again);
    this.body.appendChild(bar);
  };

  Widget.prototype.keysFor = function (labels) {
    var single = labels.every(function (label) {
      return /^[0-9a-z]$/i.test(label);
    });
    var unique = {};
    labels.forEach(function (label) {
      unique[label.toLowerCase()] = true;
    });
    if (single && Object.keys(unique).length === labels.length) {
      return labels.map(function (label) {
        return label.toLowerCase();
      });
    }
    return labels.map(function (label, index) {
      return index < 9 ? String(index + 1) : index === 9 ? "0" : "";
    });
  };

  Widget.prototype.showStep = function () {
    var self = this;
    var challenge = this.challenge;
    var items = challenge.items;
    var item = items[this.step];
    var stage = el("div", "cl-stage");
    var noun = item.image ? "Image" : "Text";
    var figure = el("div", "cl-figure");
    figure.setAttribute("role", "img");
    figure.setAttribute("aria-label", noun + " " + (this.step + 1) + " of " + items.length);
    figure.appendChild(this.tileContent(item));
    stage.appendChild(figure);
    var progress = el("p", "cl-progress", noun + " " + (this.step + 1) + " of " + items.length);
    stage.appendChild(progress);
    var choices = el("div", "cl-choices");
    choices.setAttribute("role", "group");
    choices.setAttribute("aria-labelledby", this.promptId);
    var options;
    if (challenge.kind === "verify") {
      options = [
        { value: true, text: "Yes", key: "y" },
        { value: false, text: "No", key: "n" }
      ];
    } else {
      var keys = this.keysFor(challenge.labels || []);
      options = (challenge.labels || []).map(function (label, index) {
        return { value: label, text: label, key: keys[index] };
      });
    }
    this.keyMap = {};
    options.forEach(function (option) {
      var choice = button("cl-choice");
      choice.appendChild(el("span", "cl-choice-text", option.text));
      if (option.key && option.key !== option.text.toLowerCase()) {
        var kbd = el("kbd", "cl-key", option.key.toUpperCase());
        kbd.setAttribute("aria-hidden", "true");
        choice.appendChild(kbd);
      }
      if (option.key) {
        choice.setAttribute("aria-keyshortcuts", option.key.toUpperCase());
        self.keyMap[option.key] = option.value;
      }
      choice.addEventListener("click", function () {
        self.choose(option.value);
      });
      choices.appendChild(choice);
    });
    if (this.stage) {
      this.body.replaceChild(stage, this.stage);
    } else {
      this.body.appendChild(stage);
    }
    this.stage = stage;
    stage.appendChild(choices);
    var hint = challenge.kind === "verify" ? "Keys: Y for yes, N for no." : "Press a label's key, or Tab to it and press Enter.";
    stage.appendChild(el("p", "cl-hint", hint));
    if (this.step === 0) {
      this.actionsStep();
    }
    choices.firstChild && choices.firstChild.focus();
  };

  Widget.prototype.actionsStep = function () {
    var self = this;
    var bar = el("div", "cl-actions");
    var again = button("cl-reload", "New challenge");
    again.setAttribute("aria-label", "Load a new challenge");
    again.addEventListener("click", function () {
      self.body.hidden = true;
      self.start();
    });
    bar.appendChild(again);
    this.body.appendChild(bar);
  };

  Widget.prototype.choose = function (value) {
    if (this.busy || !this.challenge) {
      return;
    }
    var items = this.challenge.items;
    this.answers[items[this.step].id] = value;
    this.step += 1;
    if (this.step < items.length) {
      this.showStep();
    } else {
      this.submit({ answers: this.answers });
    }
  };

  Widget.prototype.onKey = function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || !this.challenge || this.busy) {
      return;
    }
    var kind = this.challenge.kind;
    if (kind !== "choice" && kind !== "verify") {
      return;
    }
    var key = (event.key || "").toLowerCase();
    if (this.keyMap && Object.prototype.hasOwnProperty.call(this.keyMap, key)) {
      event.preventDefault();
      this.choose(this.keyMap[key]);
    }
  };

  Widget.prototype.submit = function (answer) {
    var self = this;
    if (this.busy || !this.challenge) {
      return;
    }
    this.busy = true;
    this.body.setAttribute("aria-busy", "true");
    var path = "/api/v1/challenge/" + encodeURIComponent(this.challenge.id) + "/answer";
    request("POST", path, answer).then(
      function (reply) {
        self.busy = false;
        self.body.removeAttribute("aria-busy");
        self.stage = null;
        var data = reply.data || {};
        if (reply.status === 200 && data.passed && data.token) {
          self.passed(data.token, data.expires_in || 120);
        } else if (reply.status === 200 && data.next) {
          self.show(data.next, "Not quite. Please try this one.");
        } else if (reply.status === 410) {
          self.challenge = null;
          self.body.hidden = true;
          self.say("That challenge expired; here is a new one.");
          self.start();
        } else {
          self.challenge = null;
          self.fail(data.detail || "The check failed. Please try again.", data.error || "failed");
        }
      },
      function () {
        self.busy = false;
        self.body.removeAttribute("aria-busy");
        self.fail("The check could not be reached. Try again.", "network-error");
      }
    );
  };

  Widget.prototype.passed = function (token, expiresIn, note) {
    var self = this;
    this.challenge = null;
    this.setToken(token);
    this.body.hidden = true;
    this.body.textContent = "";
    this.head.hidden = this.invisible;
    this.root.classList.add("cl-done");
    this.startLabel.textContent = "Verified";
    this.startButton.setAttribute("aria-disabled", "true");
    this.say(note || "You are verified. Thank you for helping label data.", "ok");
    clearTimeout(this.expiryTimer);
    this.expiryTimer = setTimeout(function () {
      self.expire();
    }, expiresIn * 1000);
    var onPass = callbackOf(this.option("callback"));
    if (onPass) {
      onPass(token);
    } else if (this.boundButton) {
      this.boundButton.click();
    }
    this.settle(token, null);
    if (!this.invisible) {
      this.startButton.focus();
    }
  };

  Widget.prototype.expire = function () {
    this.reset();
    this.say("The check expired. Please check again.", "error");
    var onExpired = callbackOf(this.option("expired-callback"));
    if (onExpired) {
      onExpired();
    }
  };

  Widget.prototype.settle = function (token, error) {
    var waiters = this.waiters;
    this.waiters = [];
    waiters.forEach(function (waiter) {
      if (token) {
        waiter.resolve({ response: token, key: "" });
      } else {
        waiter.reject(error);
      }
    });
  };

  Widget.prototype.reset = function () {
    clearTimeout(this.expiryTimer);
    this.setToken("");
    this.challenge = null;
    this.stage = null;
    this.body.hidden = true;
    this.body.textContent = "";
    this.head.hidden = this.invisible;
    this.root.classList.remove("cl-done");
    this.startLabel.textContent = "I am human";
    this.startButton.removeAttribute("aria-disabled");
    this.say("");
  };

  // --- The public API ---------------------------------------------------------------------------

  function widgetFor(id) {
    if (id === undefined || id === null || id === "") {
      return widgets[0] || null;
    }
    return widgets[Number(id)] || null;
  }

  function render(container, params) {
    if (typeof container === "string") {
      container = document.getElementById(container);
    }
    if (!container) {
      throw new Error("crowdloop.render: container not found");
    }
    if (container.hasAttribute("data-crowdloop-id")) {
      return Number(container.getAttribute("data-crowdloop-id"));
    }
    loadStylesheet();
    var id = widgets.length;
    container.setAttribute("data-crowdloop-id", String(id));
    widgets.push(new Widget(id, container, params || {}));
    return id;
  }

  function getResponse(id) {
    var widget = widgetFor(id);
    return widget ? widget.token : "";
  }

  function reset(id) {
    var widget = widgetFor(id);
    if (widget) {
      widget.reset();
    }
  }

  function execute(id, options) {
    if (id !== null && typeof id === "object") {
      options = id;
      id = undefined;
    }
    var widget = widgetFor(id);
    var promise = null;
    if (widget) {
      promise = new Promise(function (resolve, reject) {
        if (widget.token) {
          resolve({ response: widget.token, key: "" });
        } else {
          widget.waiters.push({ resolve: resolve, reject: reject });
          widget.start();
        }
      });
    }
    if (options && options.async) {
      return promise || Promise.reject("no-widget");
    }
    if (promise) {
      promise.catch(function () {});
    }
    return undefined;
  }

  function remove(id) {
    var widget = widgetFor(id);
    if (widget) {
      clearTimeout(widget.expiryTimer);
      widget.root.parentNode && widget.root.parentNode.removeChild(widget.root);
      widget.container.removeAttribute("data-crowdloop-id");
      widgets[widget.id] = null;
    }
  }

  function renderAll() {
    var nodes = document.querySelectorAll(SELECTOR);
    for (var i = 0; i < nodes.length; i++) {
      if (nodes[i].getAttribute("data-sitekey") && !nodes[i].hasAttribute("data-crowdloop-id")) {
        render(nodes[i], {});
      }
    }
  }

  var apiOrigin = new URL(apiBase, document.baseURI).origin;
  window.addEventListener("message", function (event) {
    var data = event.data;
    if (event.origin !== apiOrigin || !data || data.type !== "crowdloop:accessibility-pass") {
      return;
    }
    widgets.forEach(function (widget) {
      if (widget) {
        widget.onAccessibilityPass(data);
      }
    });
  });

  var api = {
    __crowdloop: true,
    render: render,
    getResponse: getResponse,
    reset: reset,
    execute: execute,
    remove: remove,
    ready: function (callback) {
      if (typeof callback === "function") {
        callback();
      }
    },
    getRespKey: function () {
      return "";
    }
  };
  window.crowdloop = api;
  if (!window.hcaptcha) {
    window.hcaptcha = api;
  }
  if (!window.grecaptcha || !window.grecaptcha.render) {
    window.grecaptcha = api;
  }

  var mode = scriptUrl.searchParams.get("render");
  var onload = scriptUrl.searchParams.get("onload");
  function boot() {
    if (mode !== "explicit") {
      renderAll();
    }
    var onLoad = callbackOf(onload);
    if (onLoad) {
      onLoad();
    }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", boot);
  } else {
    boot();
  }
})();

/*! deflect widget: suggests help-center articles while a customer fills in a contact form.
 * One file, no dependencies, no build step. Add it to a page:
 *
 *   <script src="https://support.example.com/widget/deflect-widget.js" defer
 *           data-api="https://support.example.com"
 *           data-subject="#subject" data-description="#message" data-form="#contact-form"></script>
 *
 * or call DeflectWidget.init({api, subject, description, form, ...}) yourself.
 * It never gets in the way: when the API is slow, down or failing, the form works as it
 * did without it, and nothing is shown to the customer.
 * Licence: Apache-2.0.
 */
(function () {
  "use strict";
  if (window.DeflectWidget) return;

  var TEXTS = {
    en: {
      heading: "These articles might answer your question",
      ask: "Did this answer your question?",
      yes: "Yes",
      no: "No",
      thanks: "Great, glad it helped. You don't need to send this form.",
      leave: "Leave without sending",
      announce: "{n} suggested articles below the message field",
      opensNewTab: "(opens in a new tab)"
    },
    de: {
      heading: "Diese Artikel beantworten vielleicht Ihre Frage",
      ask: "Hat das Ihre Frage beantwortet?",
      yes: "Ja",
      no: "Nein",
      thanks: "Schön, dass es geholfen hat. Sie müssen das Formular nicht absenden.",
      leave: "Ohne Absenden verlassen",
      announce: "{n} vorgeschlagene Artikel unter dem Nachrichtenfeld",
      opensNewTab: "(öffnet in neuem Tab)"
    },
    fr: {
      heading: "Ces articles répondent peut-être à votre question",
      ask: "Cela a-t-il répondu à votre question ?",
      yes: "Oui",
      no: "Non",
      thanks: "Parfait, ravi que cela vous ait aidé. Inutile d'envoyer ce formulaire.",
      leave: "Quitter sans envoyer",
      announce: "{n} articles suggérés sous le champ du message",
      opensNewTab: "(s'ouvre dans un nouvel onglet)"
    },
    es: {
      heading: "Estos artículos podrían responder a su pregunta",
      ask: "¿Esto respondió a su pregunta?",
      yes: "Sí",
      no: "No",
      thanks: "Perfecto, nos alegra que le haya servido. No necesita enviar este formulario.",
      leave: "Salir sin enviar",
      announce: "{n} artículos sugeridos debajo del campo del mensaje",
      opensNewTab: "(se abre en una pestaña nueva)"
    },
    "zh-CN": {
      heading: "这些文章或许能解答您的问题",
      ask: "这解答了您的问题吗？",
      yes: "是",
      no: "否",
      thanks: "太好了，很高兴能帮到您。您无需再提交此表单。",
      leave: "不提交，直接离开",
      announce: "消息输入框下方有 {n} 篇推荐文章",
      opensNewTab: "（在新标签页中打开）"
    },
    "zh-TW": {
      heading: "這些文章或許能解答您的問題",
      ask: "這有解答您的問題嗎？",
      yes: "是",
      no: "否",
      thanks: "太好了，很高興能幫上忙。您不需要送出這份表單。",
      leave: "不送出，直接離開",
      announce: "訊息欄位下方有 {n} 篇建議文章",
      opensNewTab: "（在新分頁中開啟）"
    },
    id: {
      heading: "Artikel berikut mungkin menjawab pertanyaan Anda",
      ask: "Apakah ini menjawab pertanyaan Anda?",
      yes: "Ya",
      no: "Tidak",
      thanks: "Bagus, senang bisa membantu. Anda tidak perlu mengirim formulir ini.",
      leave: "Keluar tanpa mengirim",
      announce: "{n} artikel yang disarankan di bawah kolom pesan",
      opensNewTab: "(terbuka di tab baru)"
    }
  };

  var has = Object.prototype.hasOwnProperty;

  /** The TEXTS key for a BCP-47 tag (any case, "_" as "-"), or null when there is none.
   * Chinese: the script subtag decides (zh-Hant-*, zh-Hans-*), else the region: TW, HK and
   * MO are Traditional, anything else Simplified. "in" is the old code of Indonesian. */
  function textsKey(tag) {
    if (!tag) return null;
    var p = String(tag).trim().replace(/_/g, "-").toLowerCase().split("-");
    var base = p[0] === "in" ? "id" : p[0];
    if (base === "zh") {
      var sub = p.slice(1);
      if (sub.indexOf("hant") >= 0) return "zh-TW";
      if (sub.indexOf("hans") >= 0) return "zh-CN";
      return /^(tw|hk|mo)$/.test(sub[0] || "") ? "zh-TW" : "zh-CN";
    }
    return base && has.call(TEXTS, base) ? base : null;
  }

  /** ``tag`` as the API accepts a locale ("_" as "-"; when malformed, its language subtag
   * alone, else null), so that an odd page never costs the customer the suggestions. */
  function localeTag(tag) {
    if (!tag) return null;
    var t = String(tag).trim().replace(/_/g, "-");
    if (t.length <= 35 && /^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$/.test(t)) return t;
    var base = t.split("-")[0];
    return /^[A-Za-z]{2,3}$/.test(base) ? base : null;
  }

  // Han characters, as the engine's language detection counts them (any one makes a text Chinese)
  var HAN = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[\ud840-\ud87f][\udc00-\udfff]/;

  var CSS =
    ":host{all:initial;display:block;font:var(--deflect-font,14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif);" +
    "color:var(--deflect-fg,#1c2128)}" +
    ".box{margin:var(--deflect-margin,.5rem 0 1rem);padding:var(--deflect-padding,.75rem 1rem);" +
    "background:var(--deflect-bg,#f6f8fa);border:1px solid var(--deflect-border,#d0d7de);border-radius:var(--deflect-radius,8px)}" +
    "[hidden]{display:none!important}" +
    "h2{font-size:var(--deflect-heading-size,.95rem);margin:0 0 .5rem;font-weight:600}" +
    "ul{list-style:none;margin:0;padding:0}li{margin:0 0 .5rem}" +
    "a{display:block;padding:.4rem .5rem;border-radius:6px;color:inherit;text-decoration:none}" +
    "a:hover{background:var(--deflect-hover,#eaeef2)}" +
    "a:focus-visible,button:focus-visible{outline:3px solid var(--deflect-focus,#1f6feb);outline-offset:2px}" +
    ".t{display:block;color:var(--deflect-accent,#0969da);font-weight:600}" +
    ".s{display:block;color:var(--deflect-muted,#57606a);font-size:.92em;overflow:hidden;display:-webkit-box;" +
    "-webkit-line-clamp:2;-webkit-box-orient:vertical}" +
    ".ask{display:flex;gap:.5rem;align-items:center;flex-wrap:wrap;margin-top:.25rem}" +
    "button{font:inherit;padding:.3rem .8rem;border-radius:6px;border:1px solid var(--deflect-border,#d0d7de);" +
    "background:var(--deflect-button-bg,#fff);color:inherit;cursor:pointer}" +
    "button.primary{background:var(--deflect-accent,#0969da);border-color:var(--deflect-accent,#0969da);color:#fff}" +
    ".sr{position:absolute;width:1px;height:1px;margin:-1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}";

  function uuid() {
    try {
      if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    } catch (e) {}
    return "x" + Date.now().toString(36) + Math.random().toString(36).slice(2, 12);
  }

  /** ``u`` resolved against the page when it is an http(s) URL; null for any other scheme
   * (javascript:, data:, vbscript:, ...), which is never rendered or followed. */
  function safeUrl(u) {
    if (typeof u !== "string" || !u) return null;
    var p;
    try {
      p = new URL(u, location.href);
    } catch (e) {
      return null;
    }
    return p.protocol === "http:" || p.protocol === "https:" ? p.href : null;
  }

  function nowIso() {
    return new Date().toISOString();
  }

  function pick(sel) {
    if (!sel) return null;
    if (typeof sel !== "string") return sel;
    try {
      return document.querySelector(sel);
    } catch (e) {
      return null;
    }
  }

  function sessionId(storageKey) {
    try {
      var s = sessionStorage.getItem(storageKey);
      if (!s) {
        s = uuid();
        sessionStorage.setItem(storageKey, s);
      }
      return s;
    } catch (e) {
      return uuid(); // storage blocked: one id for this page view
    }
  }

  /** Read / write JSON in window[area]; storage may be blocked (private mode, policies). */
  function load(area, key, fallback) {
    try {
      var v = JSON.parse(window[area].getItem(key));
      return v == null ? fallback : v;
    } catch (e) {
      return fallback;
    }
  }
  function save(area, key, value) {
    try {
      window[area].setItem(key, JSON.stringify(value));
    } catch (e) {}
  }

  /** Options from the script tag's data-* attributes. */
  function fromScriptTag(el) {
    if (!el) return null;
    var d = el.dataset || {};
    var texts = null;
    if (d.texts) {
      try {
        texts = JSON.parse(d.texts);
      } catch (e) {}
    }
    var base = d.api;
    if (!base && el.src) {
      try {
        base = new URL(el.src, location.href).origin;
      } catch (e) {}
    }
    return {
      api: base,
      subject: d.subject,
      description: d.description,
      form: d.form,
      k: d.k ? parseInt(d.k, 10) : undefined,
      delay: d.delay ? parseInt(d.delay, 10) : undefined,
      minLength: d.minLength ? parseInt(d.minLength, 10) : undefined,
      timeout: d.timeout ? parseInt(d.timeout, 10) : undefined,
      locale: d.locale,
      lang: d.lang,
      formId: d.formId,
      channel: d.channel,
      fields: d.fields ? d.fields.split(",").map(function (f) { return f.trim(); }).filter(Boolean) : undefined,
      target: d.target,
      articleUrl: d.articleUrl,
      leaveUrl: d.leaveUrl,
      container: d.container,
      texts: texts,
      auto: d.auto !== "false"
    };
  }

  function Widget(opts) {
    var self = this;
    opts = opts || {};
    this.api = (opts.api || location.origin).replace(/\/+$/, "");
    this.subject = pick(opts.subject);
    this.description = pick(opts.description);
    this.form = pick(opts.form) || (this.description && this.description.form) || null;
    this.k = Math.min(10, Math.max(1, opts.k || 3));
    this.delay = opts.delay >= 0 ? opts.delay : 400;
    this.minLength = opts.minLength >= 0 ? opts.minLength : 12;
    this.timeout = opts.timeout || 3000;
    this.target = opts.target || "_blank";
    this.articleUrl = opts.articleUrl || null;
    this.leaveUrl = opts.leaveUrl || null;
    this.formId = opts.formId || (this.form && this.form.id) || null;
    this.channel = opts.channel || null; // form (the default), chat or email: costs are counted per channel
    // other form fields sent with the text (by name, in the form): {"product": "iOS app"}
    this.fields = (opts.fields || []).slice(0, 20);
    // lang: the widget's texts; locale: also sent to the API. One given alone is used for both;
    // with neither, the page's <html lang> is. A language without texts gets English ones.
    var pageLang = document.documentElement.getAttribute("lang") || "";
    this.lang = textsKey(opts.lang || opts.locale || pageLang) || "en";
    this.t = Object.assign({}, TEXTS.en, TEXTS[this.lang], opts.texts || {});
    this.locale = localeTag(opts.locale); // explicit: always sent
    this.localeHint = this.locale ? null : localeTag(opts.lang || pageLang); // see localeFor
    var key = opts.storageKey || "deflect.session";
    this.session = opts.sessionId || sessionId(key);
    // the server's token for this session, per request id ("" = the latest): events carry it
    this.tokenKey = key + ".tokens." + this.session;
    this.tokens = load("sessionStorage", this.tokenKey, {});
    // events not yet delivered survive a closed tab (localStorage) and are sent on a later page
    this.pendingKey = "deflect.pending";
    this.queue = [];
    this.seq = 0;
    this.lastText = null;
    this.current = null; // the response being shown
    this.opened = null; // last article opened
    this.submitted = false;
    this.left = false;
    this.typed = false;
    this.timer = null;
    this.flushTimer = null;
    this.inflight = null;
    this.backoff = 1000;
    if (!this.description && !this.subject) return;

    this.build(opts.container);
    var pending = load("localStorage", this.pendingKey, []);
    if (pending.length) {
      this.queue = pending.slice(-200);
      setTimeout(function () {
        self.safely(function () { self.flush(false); });
      }, 500);
    }
    var onInput = function () {
      self.typed = true;
      clearTimeout(self.timer);
      self.timer = setTimeout(function () {
        self.safely(self.suggest);
      }, self.delay);
    };
    [this.subject, this.description].forEach(function (el) {
      if (el) el.addEventListener("input", onInput);
    });
    this.fields.forEach(function (name) {
      var el = self.field(name);
      if (el) el.addEventListener("change", onInput);
    });
    if (this.form) {
      this.form.addEventListener("submit", function () {
        self.safely(function () {
          self.submitted = true;
          self.track({ type: "form_submitted" });
          self.flush(true); // the page is about to navigate away: send with a beacon
        });
      });
    }
    var onLeave = function () {
      self.safely(function () {
        if (!self.submitted && !self.left && self.typed) {
          self.left = true;
          self.track({ type: "form_abandoned" });
        }
        self.flush(true);
      });
    };
    window.addEventListener("pagehide", onLeave);
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "hidden") self.safely(function () { self.flush(true); });
    });
  }

  Widget.prototype.safely = function (fn) {
    try {
      fn.call(this);
    } catch (e) {
      if (window.console && console.debug) console.debug("deflect widget:", e);
    }
  };

  Widget.prototype.build = function (containerSel) {
    var host = pick(containerSel);
    if (!host) {
      host = document.createElement("div");
      var after = this.description || this.subject;
      after.insertAdjacentElement("afterend", host);
    }
    host.classList.add("deflect-widget");
    this.host = host;
    var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
    var style = document.createElement("style");
    style.textContent = CSS;
    root.appendChild(style);
    var live = document.createElement("div");
    live.className = "sr";
    live.setAttribute("aria-live", "polite");
    live.setAttribute("role", "status");
    live.setAttribute("lang", this.lang);
    root.appendChild(live);
    var box = document.createElement("div");
    box.className = "box";
    box.setAttribute("role", "region");
    box.setAttribute("lang", this.lang); // the language of its texts, for screen readers
    box.setAttribute("aria-label", this.t.heading);
    box.hidden = true;
    box.innerHTML =
      "<h2 part='heading'></h2><ul part='list'></ul>" +
      "<div class='ask' part='feedback'><span class='q'></span>" +
      "<button type='button' class='yes'></button><button type='button' class='no'></button></div>" +
      "<div class='done' hidden><p class='thanks'></p><button type='button' class='primary leave'></button></div>";
    box.querySelector("h2").textContent = this.t.heading;
    box.querySelector(".q").textContent = this.t.ask;
    box.querySelector(".yes").textContent = this.t.yes;
    box.querySelector(".no").textContent = this.t.no;
    box.querySelector(".thanks").textContent = this.t.thanks;
    box.querySelector(".leave").textContent = this.t.leave;
    root.appendChild(box);
    this.root = root;
    this.box = box;
    this.live = live;
    this.list = box.querySelector("ul");
    var self = this;
    box.querySelector(".yes").addEventListener("click", function () {
      self.safely(function () { self.feedback(true); });
    });
    box.querySelector(".no").addEventListener("click", function () {
      self.safely(function () { self.feedback(false); });
    });
    box.querySelector(".leave").addEventListener("click", function () {
      self.safely(function () {
        self.left = true;
        self.track({ type: "form_abandoned" });
        self.flush(true);
        location.assign(safeUrl(self.leaveUrl) || safeUrl(document.referrer) || "/");
      });
    });
    box.addEventListener("keydown", function (ev) {
      if (ev.key === "Escape") {
        self.safely(function () {
          self.hide();
          (self.description || self.subject).focus();
        });
      }
    });
  };

  /** The form element named ``name`` (in the form, else anywhere on the page), or null. */
  Widget.prototype.field = function (name) {
    var el = this.form && this.form.elements ? this.form.elements[name] : null;
    if (!el) {
      try {
        el = document.querySelector('[name="' + name.replace(/["\\]/g, "") + '"]');
      } catch (e) {}
    }
    return el && "value" in el ? el : null;
  };

  Widget.prototype.text = function () {
    var s = this.subject ? this.subject.value.trim() : "";
    var d = this.description ? this.description.value.trim() : "";
    var fields = {}, extra = "";
    for (var i = 0; i < this.fields.length; i++) {
      var el = this.field(this.fields[i]);
      var v = el ? String(el.value).trim().slice(0, 1000) : "";
      if (v) {
        fields[this.fields[i].slice(0, 100)] = v;
        extra += "\n" + this.fields[i] + ": " + v;
      }
    }
    // joined: what the customer typed, for the minimum length; key: also the fields, so that
    // choosing another product asks again
    var joined = (s + "\n" + d).trim();
    return { subject: s, description: d, fields: fields, joined: joined, key: joined + extra };
  };

  Widget.prototype.suggest = function () {
    var q = this.text();
    if (q.joined.length < this.minLength) {
      if (!q.joined) this.hide();
      return;
    }
    if (q.key === this.lastText) return; // nothing changed: no request
    this.lastText = q.key;
    var seq = ++this.seq;
    var self = this;
    if (this.inflight) this.inflight.abort();
    var ctrl = window.AbortController ? new AbortController() : null;
    this.inflight = ctrl;
    var timer = setTimeout(function () {
      if (ctrl) ctrl.abort();
    }, this.timeout);
    var body = { subject: q.subject, description: q.description, session_id: this.session, k: this.k };
    if (this.tokens[""]) body.token = this.tokens[""]; // keeps the session's group
    if (this.formId) body.form_id = this.formId;
    if (this.channel) body.channel = this.channel;
    if (Object.keys(q.fields).length) body.fields = q.fields;
    var locale = this.localeFor(q.joined);
    if (locale) body.locale = locale;
    fetch(this.api + "/v1/suggest", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: ctrl ? ctrl.signal : undefined,
      credentials: "omit"
    })
      .then(function (r) {
        return r.ok ? r.json() : null;
      })
      .then(function (res) {
        clearTimeout(timer);
        if (res && res.token) {
          self.tokens[""] = self.tokens[res.request_id] = res.token;
          save("sessionStorage", self.tokenKey, self.tokens);
        }
        if (seq !== self.seq || !res) return; // a newer request was made: never show a stale answer
        self.safely(function () { self.show(res); });
      })
      .catch(function () {
        clearTimeout(timer); // slow, down or failing: the form works as before, silently
        if (seq === self.seq) self.lastText = null; // try again on the next keystroke
      });
  };

  /** The request's locale: the explicit one; else the lang / page language, except when it
   * would contradict the text: Han characters in the text and a language other than Chinese
   * (a page left at lang="en"). Then none is sent, and the engine detects the language. */
  Widget.prototype.localeFor = function (text) {
    if (this.locale) return this.locale;
    var hint = this.localeHint;
    if (hint && HAN.test(text) && hint.split("-")[0].toLowerCase() !== "zh") return null;
    return hint;
  };

  Widget.prototype.hide = function () {
    if (this.box) this.box.hidden = true;
  };

  Widget.prototype.show = function (res) {
    this.variant = res.variant;
    var items = res.suggestions || [];
    if (res.variant === "control" || res.abstained || !items.length) {
      this.current = null;
      this.hide();
      return;
    }
    var self = this;
    // only http(s) links are ever rendered, whatever the index or the page's settings say
    var hrefs = items.map(function (s) {
      return safeUrl(self.articleUrl ? self.articleUrl.replace("{id}", encodeURIComponent(s.article_id)) : s.url);
    });
    items = items.filter(function (s, i) { return hrefs[i] !== null; });
    hrefs = hrefs.filter(function (h) { return h !== null; });
    if (!items.length) {
      this.current = null;
      this.hide();
      return;
    }
    this.current = res;
    this.list.textContent = "";
    items.forEach(function (s, i) {
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.href = hrefs[i];
      if (self.target) a.target = self.target;
      if (self.target === "_blank") a.rel = "noopener";
      a.setAttribute("part", "suggestion");
      a.dataset.articleId = s.article_id;
      var t = document.createElement("span");
      t.className = "t";
      t.textContent = s.title;
      var sn = document.createElement("span");
      sn.className = "s";
      sn.textContent = s.snippet;
      a.appendChild(t);
      a.appendChild(sn);
      if (self.target === "_blank") {
        var sr = document.createElement("span");
        sr.className = "sr";
        sr.textContent = " " + self.t.opensNewTab;
        a.appendChild(sr);
      }
      a.addEventListener("click", function () {
        self.safely(function () {
          self.opened = s.article_id;
          self.track({ type: "article_opened", request_id: res.request_id, article_id: s.article_id });
          self.flush(false);
        });
      });
      li.appendChild(a);
      self.list.appendChild(li);
    });
    this.box.querySelector(".ask").hidden = false;
    this.box.querySelector(".done").hidden = true;
    this.box.hidden = false;
    this.live.textContent = this.t.announce.replace("{n}", String(items.length));
    this.track({ type: "suggestions_shown", request_id: res.request_id });
  };

  Widget.prototype.feedback = function (helpful) {
    var res = this.current;
    if (!res) return;
    var article = this.opened || (res.suggestions[0] && res.suggestions[0].article_id);
    this.track({ type: "feedback", request_id: res.request_id, article_id: article, helpful: helpful });
    this.flush(false);
    this.box.querySelector(".ask").hidden = true;
    if (helpful) {
      var done = this.box.querySelector(".done");
      done.hidden = false;
      this.live.textContent = this.t.thanks;
      done.querySelector(".leave").focus();
    } else {
      this.hide(); // out of the way: the customer goes on with the form
    }
  };

  /** Queue an event. Without a token (no suggest answer yet) there is nothing to attribute it
   * to, and the server would not count it: it is not sent. */
  Widget.prototype.track = function (ev) {
    ev.token = this.tokens[ev.request_id || ""] || this.tokens[""];
    if (!ev.token) return;
    ev.event_id = uuid();
    ev.session_id = this.session;
    ev.ts = nowIso();
    this.queue.push(ev);
    this.keep();
    var self = this;
    if (this.queue.length >= 20) this.flush(false);
    else if (!this.flushTimer)
      this.flushTimer = setTimeout(function () {
        self.flushTimer = null;
        self.safely(function () { self.flush(false); });
      }, 1000);
  };

  /** Keep the undelivered events in localStorage: a lost form_submitted would look like a deflection. */
  Widget.prototype.keep = function () {
    if (this.queue.length) save("localStorage", this.pendingKey, this.queue.slice(-200));
    else
      try {
        window.localStorage.removeItem(this.pendingKey);
      } catch (e) {}
  };

  /** Send queued events. Each keeps its event_id, so a retry is never counted twice. */
  Widget.prototype.flush = function (leaving) {
    if (!this.queue.length) return;
    var batch = this.queue.splice(0, 100);
    var url = this.api + "/v1/events";
    var payload = JSON.stringify({ events: batch });
    if (leaving && navigator.sendBeacon) {
      // text/plain keeps a cross-origin beacon a "simple" request (no CORS preflight)
      var ok = false;
      try {
        ok = navigator.sendBeacon(url, new Blob([payload], { type: "text/plain;charset=UTF-8" }));
      } catch (e) {}
      if (ok) {
        // queued by the browser, not confirmed: the events stay in localStorage, and the next
        // page sends them again (the same event_ids: counted once)
        if (this.queue.length) this.flush(true);
        return;
      }
    }
    var self = this;
    fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: payload,
      keepalive: true,
      credentials: "omit"
    })
      .then(function (r) {
        if (r.ok || (r.status >= 400 && r.status < 500 && r.status !== 408 && r.status !== 429)) {
          self.backoff = 1000; // stored, or refused for good: do not resend
          self.keep();
          if (self.queue.length) self.flush(false);
          return;
        }
        throw new Error("status " + r.status);
      })
      .catch(function () {
        self.queue = batch.concat(self.queue); // put back, same event_ids, and retry later
        self.keep();
        var wait = self.backoff;
        self.backoff = Math.min(self.backoff * 2, 30000);
        setTimeout(function () {
          self.safely(function () { self.flush(false); });
        }, wait);
      });
  };

  var instances = [];
  window.DeflectWidget = {
    /** Attach the widget to a form; returns the instance (or null when the fields are missing). */
    init: function (opts) {
      try {
        var w = new Widget(opts);
        if (!w.box) return null;
        instances.push(w);
        return w;
      } catch (e) {
        return null;
      }
    },
    texts: TEXTS,
    instances: instances
  };

  var tag = document.currentScript;
  var start = function () {
    var o = fromScriptTag(tag);
    if (o && o.auto && (o.description || o.subject)) window.DeflectWidget.init(o);
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

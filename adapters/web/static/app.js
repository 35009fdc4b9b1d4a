// parley's chat room: one websocket, messages numbered by the server.
//
// Everything people typed is put in the page with textContent, never as HTML. The page
// remembers the number (seq) of the last message it showed; after a dropped connection it
// reconnects and asks for what came after it, and sends again, with the same id, what the
// server had not acknowledged (the server posts an id once), so nothing is lost or doubled.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const room = decodeURIComponent(location.pathname.split("/")[2] || "lobby");
  const token = new URLSearchParams(location.search).get("token") || "";
  const PING_EVERY = 20000; // ms; a pong missing for PONG_WITHIN means the network dropped
  const PONG_WITHIN = 10000;

  const state = {
    name: localStorage.getItem("parley.name") || "",
    client: sessionStorage.getItem("parley.client") || randomId(),
    bot: "parley",
    lastSeq: 0,
    joined: false,
    ws: null,
    backoff: 500,
    timers: {},
    pending: new Map(), // id -> {text, el}: sent, not yet acknowledged
  };
  sessionStorage.setItem("parley.client", state.client);

  function randomId() {
    // crypto.randomUUID exists only on https and localhost; getRandomValues everywhere.
    const bytes = crypto.getRandomValues(new Uint8Array(12));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function node(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  // -- the page ---------------------------------------------------------------------------

  document.title = `#${room} · parley`;
  $("room").textContent = `#${room}`;
  $("join-room").textContent = `#${room}`;

  function setStatus(text, bad) {
    $("status").textContent = text;
    $("status").classList.toggle("bad", Boolean(bad));
  }

  function showNotice(text) {
    const el = $("notice");
    el.textContent = text;
    el.hidden = false;
    clearTimeout(state.timers.notice);
    state.timers.notice = setTimeout(() => (el.hidden = true), 6000);
  }

  function nearBottom() {
    const log = $("log");
    return log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  }

  function scrollDown() {
    const log = $("log");
    log.scrollTop = log.scrollHeight;
  }

  function timeOf(at) {
    const date = new Date(at * 1000);
    const el = node("time", "when", date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
    el.dateTime = date.toISOString();
    el.title = date.toLocaleString();
    return el;
  }

  function render(m) {
    const mine = m.kind === "user" && m.name === state.name;
    const li = node("li", `msg ${m.kind === "bot" ? "bot" : "user"}${mine ? " mine" : ""}`);
    li.dataset.seq = String(m.seq);
    const head = node("div", "head");
    head.append(node("span", "who", m.name), timeOf(m.at));
    li.append(head);
    if (m.quote) {
      const quote = node("blockquote", "", `${m.quote.name}: ${m.quote.text}`);
      quote.title = "Show the question";
      quote.addEventListener("click", () => {
        const asked = document.querySelector(`#messages li[data-seq="${Number(m.quote.seq)}"]`);
        if (asked) {
          asked.scrollIntoView({ block: "center", behavior: "smooth" });
          asked.classList.add("flash");
          setTimeout(() => asked.classList.remove("flash"), 1500);
        }
      });
      li.append(quote);
    }
    li.append(node("div", "text", m.text));
    if (m.note) li.append(node("div", "note", m.note));
    return li;
  }

  function addMessage(m) {
    if (m.seq <= state.lastSeq) return; // already shown
    state.lastSeq = m.seq;
    const sent = m.kind === "user" && state.pending.get(m.id);
    if (sent) {
      sent.el.remove();
      state.pending.delete(m.id);
    }
    const follow = nearBottom() || sent;
    $("messages").append(render(m));
    $("empty").hidden = true;
    if (follow) scrollDown();
  }

  function clearMessages() {
    $("messages").replaceChildren();
    $("empty").hidden = false;
    state.lastSeq = 0;
  }

  // -- the connection -----------------------------------------------------------------------

  function connect() {
    clearTimeout(state.timers.retry);
    const query = new URLSearchParams({
      name: state.name,
      client: state.client,
      after: String(state.lastSeq),
    });
    if (token) query.set("token", token);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${scheme}//${location.host}/r/${encodeURIComponent(room)}/ws?${query}`;
    const ws = new WebSocket(url);
    state.ws = ws;
    state.joined = false;
    setStatus("connecting…");
    ws.onopen = () => {
      state.backoff = 500;
      ping(ws);
    };
    ws.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      handle(frame);
    };
    ws.onclose = (event) => {
      if (state.ws === ws) dropped(event.code);
    };
  }

  function ping(ws) {
    clearTimeout(state.timers.ping);
    state.timers.ping = setTimeout(() => {
      if (state.ws !== ws || ws.readyState !== WebSocket.OPEN) return;
      ws.send(JSON.stringify({ type: "ping" }));
      // A dead network never closes the socket by itself: give up on it and reconnect.
      state.timers.pong = setTimeout(() => {
        if (state.ws === ws) {
          ws.onclose = null;
          ws.close();
          dropped(1006);
        }
      }, PONG_WITHIN);
    }, PING_EVERY);
  }

  function dropped(code) {
    clearTimeout(state.timers.ping);
    clearTimeout(state.timers.pong);
    state.ws = null;
    state.joined = false;
    if (code === 4400) {
      if ($("join").hidden) askName(""); // the server said why in an error frame before
      setStatus("");
      return;
    }
    const wait = code === 1013 ? Math.max(state.backoff, 5000) : state.backoff;
    state.backoff = Math.min(state.backoff * 2, 10000);
    setStatus(`offline; reconnecting in ${Math.round(wait / 1000)} s…`, true);
    state.timers.retry = setTimeout(connect, wait * (0.8 + Math.random() * 0.4));
  }

  window.addEventListener("online", () => {
    if (!state.ws && state.name) connect();
  });

  function send(id) {
    const item = state.pending.get(id);
    if (item && state.ws && state.joined && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(JSON.stringify({ type: "say", id, text: item.text }));
    }
  }

  function handle(f) {
    switch (f.type) {
      case "welcome":
        state.bot = f.bot;
        state.name = f.name;
        $("rename").textContent = `${f.name} ✎`;
        $("text").maxLength = f.max_chars;
        $("text").placeholder = `Message #${room} (@${f.bot} or /ask to ask the bot)`;
        $("hint").textContent =
          `@${f.bot} or /ask asks the bot · /reset makes it forget · Shift+Enter for a new line`;
        setStatus("");
        break;
      case "history":
        if (f.restart) clearMessages();
        f.messages.forEach(addMessage);
        state.joined = true;
        // What the server has not posted (it is not in the history) goes again, in order.
        for (const id of state.pending.keys()) send(id);
        break;
      case "message":
        addMessage(f);
        break;
      case "ack": {
        const item = state.pending.get(f.id);
        if (item) {
          item.el.remove();
          state.pending.delete(f.id);
        }
        break;
      }
      case "thinking":
        $("thinking").hidden = !(f.count > 0);
        $("thinking-text").textContent =
          f.count > 1 ? `${state.bot} is thinking (${f.count} questions)…` : `${state.bot} is thinking…`;
        break;
      case "presence":
        $("presence").textContent = f.names.length ? `here: ${f.names.join(", ")}` : "";
        break;
      case "notice":
        showNotice(f.message);
        break;
      case "error":
        if (f.id && state.pending.has(f.id)) {
          state.pending.get(f.id).el.remove();
          state.pending.delete(f.id);
        }
        if (f.code === "bad_name") askName(f.message);
        else if (f.code === "full") setStatus(f.message, true);
        else showNotice(f.message);
        break;
      case "pong":
        clearTimeout(state.timers.pong);
        if (state.ws) ping(state.ws);
        break;
    }
  }

  // -- typing -------------------------------------------------------------------------------

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("text");
    const text = input.value.trim();
    if (!text) return;
    const id = randomId();
    const el = render({ kind: "user", name: state.name, text, at: Date.now() / 1000, seq: 0 });
    el.classList.add("sending");
    $("pending").append(el);
    $("empty").hidden = true;
    state.pending.set(id, { text, el });
    input.value = "";
    input.style.height = "";
    scrollDown();
    send(id);
  });

  $("text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });

  $("text").addEventListener("input", (event) => {
    const input = event.target;
    input.style.height = "";
    input.style.height = `${Math.min(input.scrollHeight + 2, 160)}px`;
  });

  // -- the nickname -------------------------------------------------------------------------

  function askName(problem) {
    $("nick").value = state.name;
    $("join-error").textContent = problem || "";
    $("join-error").hidden = !problem;
    $("join").hidden = false;
    $("nick").focus();
  }

  $("join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("nick").value.trim();
    if (!name) return;
    const changed = name !== state.name;
    state.name = name;
    localStorage.setItem("parley.name", name);
    $("join").hidden = true;
    $("text").focus();
    if (state.ws && changed) {
      const old = state.ws; // reconnect under the new name, resuming where we were
      state.ws = null;
      old.onclose = null;
      old.close();
    }
    if (!state.ws) connect();
  });

  $("rename").addEventListener("click", () => askName(""));

  if (state.name) {
    $("rename").textContent = `${state.name} ✎`;
    connect();
  } else {
    askName("");
  }
})();

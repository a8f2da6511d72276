// The visitor demo: the PocketPing widget protocol by hand (connect, send, live events over WebSocket or SSE).
(function () {
  "use strict";

  const ENDPOINT = "/pocketping";
  const VISITOR_KEY = "switchboard_demo_visitor";
  const SESSION_KEY = "switchboard_demo_session";
  const QUICK_FAILURE_MS = 2000; // a socket closed this soon was refused: use SSE instead

  const seen = new Set();
  let session = null;
  let lastId = null;
  let lastTimestamp = null;

  const byId = (id) => document.getElementById(id);

  async function call(method, path, body) {
    const response = await fetch(ENDPOINT + path, {
      method: method,
      headers: { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.detail || "HTTP " + response.status);
    return answer;
  }

  function status(text, transport) {
    byId("status").textContent = text;
    if (transport !== undefined) document.body.dataset.transport = transport;
  }

  function visitorId() {
    let id = localStorage.getItem(VISITOR_KEY);
    if (!id) {
      id = "demo-" + Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("");
      localStorage.setItem(VISITOR_KEY, id);
    }
    return id;
  }

  function author(message) {
    if (message.sender === "visitor") return "You";
    if (message.sender === "ai") return "AI assistant";
    if (message.sender === "operator") return (message.metadata && message.metadata.operatorName) || "Operator";
    return "";
  }

  // Each message once, whichever way it arrives (the send's answer, the socket, SSE replay, catch-up).
  function show(message) {
    if (seen.has(message.id) || message.deletedAt) return;
    seen.add(message.id);
    lastId = message.id;
    if (!lastTimestamp || message.timestamp > lastTimestamp) lastTimestamp = message.timestamp;
    const item = document.createElement("li");
    item.className = "message from-" + message.sender;
    item.dataset.message = message.id;
    const who = document.createElement("span");
    who.className = "author";
    who.textContent = author(message);
    const text = document.createElement("p");
    text.textContent = message.content;
    item.append(who, text);
    byId("messages").append(item);
    item.scrollIntoView({ block: "nearest" });
  }

  function notice(text) {
    const item = document.createElement("li");
    item.className = "notice";
    item.textContent = text;
    byId("messages").append(item);
  }

  function handle(event) {
    if (event.type === "message") show(event.data);
    else if (event.type === "ai_takeover") notice("The AI assistant is answering while the team is busy.");
  }

  async function catchUp() {
    const query = new URLSearchParams({ sessionId: session.sessionId });
    if (lastId) query.set("after", lastId);
    const page = await call("GET", "/messages?" + query);
    page.messages.forEach(show);
  }

  function connectSocket() {
    const url = location.origin.replace(/^http/, "ws") + ENDPOINT + "/stream?sessionId=" + encodeURIComponent(session.sessionId);
    const started = Date.now();
    const socket = new WebSocket(url);
    socket.onopen = function () {
      status("live", "websocket");
      catchUp(); // anything sent while the socket was down
    };
    socket.onmessage = (frame) => handle(JSON.parse(frame.data));
    socket.onclose = function () {
      if (Date.now() - started < QUICK_FAILURE_MS) return connectEvents();
      status("reconnecting…");
      setTimeout(connectSocket, 1000);
    };
  }

  function connectEvents() {
    const query = new URLSearchParams({ sessionId: session.sessionId });
    if (lastTimestamp) query.set("after", lastTimestamp); // the server replays what came after
    const events = new EventSource(ENDPOINT + "/stream?" + query);
    events.addEventListener("connected", () => status("live", "sse"));
    events.addEventListener("message", (frame) => handle(JSON.parse(frame.data)));
    events.onerror = () => status("reconnecting…"); // EventSource reconnects by itself
  }

  async function connect() {
    session = await call("POST", "/connect", {
      visitorId: visitorId(),
      sessionId: sessionStorage.getItem(SESSION_KEY) || undefined,
      metadata: {
        url: location.href,
        referrer: document.referrer || undefined,
        pageTitle: document.title,
        userAgent: navigator.userAgent,
        timezone: Intl.DateTimeFormat().resolvedOptions().timeZone,
        language: navigator.language,
        screenResolution: screen.width + "x" + screen.height,
      },
    });
    sessionStorage.setItem(SESSION_KEY, session.sessionId);
    document.body.dataset.session = session.sessionId;
    if (session.welcomeMessage) {
      byId("welcome").textContent = session.welcomeMessage;
      byId("welcome").hidden = false;
    }
    byId("operator").textContent = session.operatorName || (session.operatorOnline ? "Support (online)" : "Support");
    (session.messages || []).forEach(show);
    connectSocket();
  }

  async function send(evt) {
    evt.preventDefault();
    const box = byId("content");
    const content = box.value.trim();
    if (!content || !session) return;
    try {
      const sent = await call("POST", "/message", { sessionId: session.sessionId, content: content, sender: "visitor" });
      show({ id: sent.messageId, timestamp: sent.timestamp, sender: "visitor", content: content });
      box.value = "";
    } catch (error) {
      notice("Not sent: " + error.message);
    }
  }

  byId("composer").addEventListener("submit", send);
  byId("content").addEventListener("keydown", function (evt) {
    if (evt.key === "Enter" && !evt.shiftKey) {
      evt.preventDefault();
      byId("composer").requestSubmit();
    }
  });
  byId("restart").addEventListener("click", function () {
    localStorage.removeItem(VISITOR_KEY);
    sessionStorage.removeItem(SESSION_KEY);
    location.reload();
  });
  connect().catch((error) => status("could not connect: " + error.message));
})();

// The dashboard's live status: a WebSocket that reconnects with backoff and jitter.
import { setConnState } from "./ui.js";

export function connectStatus(onStatus) {
  let delay = 500;
  let socket = null;
  let stopped = false;

  function open() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/api/v1/status/ws`);
    setConnState("connecting");
    socket.addEventListener("open", () => {
      delay = 500;
      setConnState("open");
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type === "status") onStatus(message);
    });
    socket.addEventListener("close", () => {
      setConnState("closed");
      if (stopped) return;
      const wait = delay / 2 + Math.random() * delay;
      delay = Math.min(delay * 2, 10000);
      setTimeout(open, wait);
    });
  }

  // A phone that wakes up reconnects at once instead of waiting out the backoff.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && socket && socket.readyState === WebSocket.CLOSED) {
      delay = 500;
      open();
    }
  });
  open();
  return {
    close() {
      stopped = true;
      socket?.close();
    },
  };
}
